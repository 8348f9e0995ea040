#!/usr/bin/perl

# The token claims the policy reads: "scp", an array of scopes (or a
# string) joined into the scope the backend and $welby_scope see, refused
# beside "scope" or with elements that are not single scopes; and the
# patients a user/ scope reaches, from the issuer's patients_claim (an
# array of FHIR ids, default "patients"), in $welby_patients on the
# token's first use and from the cache alike, read again when a reload
# renames the claim.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks unique_jti);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS = 'https://issuer.test';
my $ISS2 = 'https://care.test';
my $AUD = 'https://fhir.test';

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

sub conf {
    my ($claim_a) = @_;
    my $opt = defined $claim_a ? " patients_claim=$claim_a" : '';
    $t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test$opt;
    welby_issuer https://care.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test patients_claim=care_team;
    welby_token_cache zone=tokens:1m;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            add_header X-Reason \$welby_reason always;
            add_header X-Scope \$welby_scope always;
            add_header X-Patients \$welby_patients always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF
}

conf(undef);
$t->run()->plan(33);

###############################################################################

my $n = 0;

sub tok {
    my (%set) = @_;
    return jwt(key => $key, set => { iss => $ISS, aud => $AUD, %set });
}

sub req {
    my ($tok, @h) = @_;
    return parse_response(http_req(uri => '/fhir/Patient/p1',
        headers => ["Authorization: Bearer $tok",
            'X-Request-Id: id33-' . ++$n, @h]));
}

sub reason_of {
    my ($r) = @_;
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } // '');
}

# what the backend received in X-Welby-Scope ('' for none)
sub backend_scope {
    my ($r) = @_;
    my $j = $r && $r->status == 200 && $r->json;
    return $j ? $j->{headers}{'x-welby-scope'} // '' : '(no answer)';
}

sub patients_of {
    my ($r) = @_;
    return ($r && $r->header('X-Patients')) // '';
}

sub audit {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return {};
    my @a = grep { ($_->{id} // '') eq $id }
        map { eval { JSON::XS->new->decode($_) } // {} }
        split /\n/, $t->read_file('audit.log');
    return @a == 1 ? $a[0] : { count => scalar @a };
}

# "welby: token valid jti:<jti> cached:<0|1>" at debug level
sub cached_flags {
    my ($jti) = @_;
    return join '', map { /cached:(\d)/ ? $1 : () }
        grep { /welby: token valid jti:\Q$jti\E / }
        split /\n/, $t->read_file('error.log');
}

###############################################################################
# scp

my $r = req(tok(scope => undef, scp => ['patient/*.rs', 'openid']));
is(reason_of($r), '200 ', 'scp array: 200');
is(backend_scope($r), 'patient/*.rs openid',
    'scp array: the backend gets the scopes joined by spaces in '
    . 'X-Welby-Scope');
is($r && $r->header('X-Scope'), 'patient/*.rs openid',
    'scp array: $welby_scope is the joined scopes');

$r = req(tok(scope => undef, scp => 'patient/Observation.rs user/*.r'));
is(backend_scope($r), 'patient/Observation.rs user/*.r',
    'scp string: passed as it is');

$r = req(tok(scope => 'patient/*.rs'), 'X-Welby-Scope: user/*.cruds');
is(backend_scope($r), 'patient/*.rs',
    'scope: a client\'s own X-Welby-Scope never reaches the backend '
    . '(control: scope as before)');

$r = req(tok(scope => undef, scp => ['user/*.cruds']),
    'X-Welby-Scope: system/*.cruds');
is(backend_scope($r), 'user/*.cruds',
    'scp: a client\'s own X-Welby-Scope is replaced by the token\'s');

$r = req(tok(scope => undef, scp => []));
is(reason_of($r) . ' [' . backend_scope($r) . ']', '200  []',
    'scp empty array: 200, an empty scope');

$r = req(tok(scope => 'patient/*.rs', scp => ['patient/*.rs']));
is(reason_of($r), '401 token_claims', 'scope and scp both: 401 token_claims');
is(audit($r)->{reason}, 'token_claims',
    'scope and scp both: the audit record names token_claims');

is(reason_of(req(tok(scope => '', scp => ['patient/*.rs']))),
    '401 token_claims', 'an empty scope and scp: 401 token_claims');
is(reason_of(req(tok(scope => undef, scp => ['patient/*.rs', 7]))),
    '401 token_claims', 'scp with a number element: 401 token_claims');
is(reason_of(req(tok(scope => undef, scp => ['patient/*.rs', undef]))),
    '401 token_claims', 'scp with a null element: 401 token_claims');
is(reason_of(req(tok(scope => undef,
        scp => ['patient/Patient.r user/*.cruds']))),
    '401 token_claims',
    'scp with two scopes in one element: 401 token_claims');
is(reason_of(req(tok(scope => undef, scp => ['patient/*.rs', '']))),
    '401 token_claims', 'scp with an empty element: 401 token_claims');
is(reason_of(req(tok(scope => undef, scp => { 'patient/*.rs' => 1 }))),
    '401 token_claims', 'scp as an object: 401 token_claims');

###############################################################################
# patients

my $jti = unique_jti();
my $care = tok(jti => $jti, patients => ['p1', 'p2']);
my @p = map { patients_of(req($care)) } 1 .. 3;
is("@p", 'p1 p2 p1 p2 p1 p2',
    'patients: $welby_patients is the ids joined, three times');
is(cached_flags($jti), '001',
    'patients: the third was served from the cache, which holds them');

$r = req(tok(patients => ['p1', 'Patient/p2']));
is(reason_of($r), '401 token_claims',
    'patients: a reference instead of an id: 401 token_claims');
is(audit($r)->{reason}, 'token_claims',
    'patients: the audit record names token_claims');
is(reason_of(req(tok(patients => ['p1', 2]))), '401 token_claims',
    'patients: a number element: 401 token_claims');
is(reason_of(req(tok(patients => 'p1'))), '401 token_claims',
    'patients: a string, not an array: 401 token_claims');
is(reason_of(req(tok(patients => ['p_1']))), '401 token_claims',
    'patients: an id outside the FHIR id grammar: 401 token_claims');

$r = req(tok(sub => 'no-patients'));
is(reason_of($r) . ' ' . ($r ? $r->header_count('X-Patients') : -1),
    '200  0', 'patients: absent, $welby_patients is empty');

$r = req(jwt(key => $key, set => { iss => $ISS2, aud => $AUD,
    care_team => ['p3', 'p4'], patients => 'not-read' }));
is(reason_of($r) . '| ' . patients_of($r), '200 | p3 p4',
    'patients_claim=care_team: that claim is read, "patients" is not');

$r = req(jwt(key => $key, set => { iss => $ISS2, aud => $AUD,
    care_team => ['p3 p4'] }));
is(reason_of($r), '401 token_claims',
    'patients_claim=care_team: an element with a space: 401 token_claims');

###############################################################################
# a reload that renames the claim: a cached token's patients are read anew

my $jti2 = unique_jti();
my $both = tok(jti => $jti2, patients => ['p1'], team => ['p7']);
@p = map { patients_of(req($both)) } 1 .. 3;
is("@p " . cached_flags($jti2), 'p1 p1 p1 001',
    'before the reload: "patients" is read, and the token is cached');

conf('team');
ok($t->reload(), 'reload with patients_claim=team');

$r = req($both);
is(patients_of($r), 'p7',
    'after the reload: the cached token\'s patients are the renamed '
    . 'claim\'s');
is(cached_flags($jti2), '0010',
    'after the reload: the token was verified again, not served from the '
    . 'cache');

###############################################################################
# patients_claim errors

sub bad_claim {
    my ($value) = @_;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_issuer https://bad.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test patients_claim=$value;

    server {
        listen 127.0.0.1:%%PORT_8090%%;
        location / { welby on; return 204; }
    }
}
EOF
    return $t->test_config('bad.conf');
}

my ($c, $out) = bad_claim('care_team');
is($c, 0, 'nginx -t accepts patients_claim=care_team (control)')
    or diag($out);

for my $v (qw(patient scp)) {
    ($c, $out) = bad_claim($v);
    ok($c != 0 && $out =~ /\[emerg\]\ invalid\ patients_claim\ "\Q$v\E"\ in
                           \ welby_issuer\ "https:\/\/bad\.test"/x,
        "nginx -t refuses patients_claim=$v, a claim read as another")
        or diag($out);
}

($c, $out) = bad_claim('');
ok($c != 0 && $out =~ /\[emerg\] invalid patients_claim ""/,
    'nginx -t refuses an empty patients_claim') or diag($out);
