#!/usr/bin/perl

# The PHR policy under attack: a token for patient p1 that wants p2's
# data, in encodings, paths, Bundles, bodies, backend answers and claims
# that the spec-like t/38-policy.t does not try, and an operator's
# settings (underscores_in_headers on with a FastCGI backend,
# proxy_buffering off, a FHIR base without a token).  Each case is a
# request the gateway must answer as written, with its one audit record.
#
# Tokens are real ES256 tokens of a test issuer; the backend is a second
# nginx server with static FHIR JSON for reads (and answers that are not
# what a read asked for) and an echo for writes.
# Each case is one line of @CASES:
#
#   [token, method, uri, body, expectation]
#
# expectation is "<status> <reason|-> <interaction|?>": the response's
# status and the reason in its OperationOutcome ("-" for none), and the
# audit record's fhir.interaction ("?" when the request was refused before
# it was classified).  Every case also checks that its audit record
# exists once and carries the same reason and outcome.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);
use Welby::CGIBackend;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS = 'https://issuer.test';
my $AUD = 'https://fhir.test';

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

###############################################################################
# the backend's data: who owns what

my $J = JSON::XS->new->canonical;

sub res {
    my ($path, $r) = @_;
    $t->write_file("data/fhir/$path.json", $J->encode($r));
}

sub ref_to { return { reference => $_[0] } }

res("Patient/$_", { resourceType => 'Patient', id => $_,
    name => [{ family => "Family-$_" }] }) for qw(p1 p2 p3);
res('Observation/o1', { resourceType => 'Observation', id => 'o1',
    status => 'final', code => { text => 'weight' },
    subject => ref_to('Patient/p1') });
res('Observation/o1/_history/1', { resourceType => 'Observation',
    id => 'o1', meta => { versionId => '1' }, status => 'final',
    code => { text => 'weight' }, subject => ref_to('Patient/p1') });
res('Observation/o3', { resourceType => 'Observation', id => 'o3',
    status => 'final', code => { text => 'weight' },
    subject => ref_to('Patient/p2') });
res('Condition/c1', { resourceType => 'Condition', id => 'c1',
    subject => ref_to('Patient/p1') });
res('Medication/m1', { resourceType => 'Medication', id => 'm1',
    code => { text => 'aspirin' } });
res('Practitioner/dr1', { resourceType => 'Practitioner', id => 'dr1' });
res('Observation/o3/_history', { resourceType => 'Bundle',
    type => 'history', entry => [{ resource => { resourceType =>
    'Observation', id => 'o3', status => 'final', code => {},
    subject => ref_to('Patient/p2') } }] });
res('Observation/o4', { resourceType => 'Bundle', type => 'batch-response',
    entry => [{ resource => { resourceType => 'Observation', id => 'o3',
    subject => ref_to('Patient/p2') } }] });
res('Observation/o5', { resourceType => 'OperationOutcome',
    contained => [{ resourceType => 'Observation', id => 'o3',
    subject => ref_to('Patient/p2') }] });
res('Observation/o6', { resourceType => 'Patient', id => 'p2' });
res('Observation/o7', { resourceType => 'Observation', id => 'o7',
    subject => ref_to('#c'), contained => [{ resourceType => 'Patient',
    id => 'c' }] });
res('Observation/o8', { resourceType => 'Observation', id => 'o8',
    subject => ref_to('Patient/p1'), performer => [ref_to('Patient/p2')] });
res('Observation/o9', { resourceType => 'Observation', id => 'o9',
    subject => ref_to('Patient?_id=p2') });
res('Observation/o10', { resourceType => 'Observation', id => 'o10',
    subject => { reference => 'Patient/p2', type => 'Patient' },
    subject2 => 1 });
res('Observation/o11', { resourceType => 'Parameters', parameter => [{
    name => 'x', resource => { resourceType => 'Observation', id => 'o3',
    subject => ref_to('Patient/p2') } }] });
res('Observation/o12', { resourceType => 'Observation', id => 'o12' });
res('Observation/o13', { resourceType => 'Observation', id => 'o13',
    subject => ref_to('Patient/p2/_history/1') });
res('Observation/o14', { resourceType => 'Observation', id => 'o14',
    subject => ref_to('http://localhost/fhir/Patient/p2') });
res('Observation/o15', { resourceType => 'Observation', id => 'o15',
    subject => ref_to('http://evil.test/fhir/Patient/p1') });
res('Observation/o16', { resourceType => 'Observation', id => 'o16',
    subject => ref_to('Patient/p1'), contained => [{ resourceType =>
    'Observation', id => 'x', subject => ref_to('Patient/p2') }] });
res('Observation/o17', { resourceType => 'List', entry => [{ item =>
    ref_to('Patient/p2') }] });
res('_empty', { resourceType => 'Bundle', type => 'searchset',
    total => 0 });

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_token_cache zone=tokens:1m;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;
        underscores_in_headers on;

        location /fhir/ {
            welby on;
            welby_fhir_base /fhir;
            welby_fhir_system_clients bulk-client;
            welby_fhir_operations custom-op;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location = /fhir {
            welby on;
            welby_fhir_base /fhir;
            welby_fhir_system_clients bulk-client;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /fhir/metadata {
            welby on;
            welby_token off;
            welby_fhir_base /fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }


        location /u/fhir/ {
            welby on;
            welby_fhir_base /u/fhir;
            fastcgi_pass 127.0.0.1:%%PORT_8082%%;
            include /etc/nginx/fastcgi_params;
        }
        location /nb/fhir/ {
            welby on;
            welby_fhir_base /nb/fhir;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /open/fhir/ {
            welby on;
            welby_token off;
            welby_fhir_base /open/fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /detect/fhir/ {
            welby on;
            welby_mode detect;
            welby_fhir_base /detect/fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location /fhir/ {
            root %%TESTDIR%%/data;
            default_type application/fhir+json;
            if ($request_method !~ ^(GET|HEAD)$) {
                return 418;
            }
            error_page 418 = @echo;
            try_files $uri.json /fhir/_empty.json =404;
        }

        location = /fhir { client_body_buffer_size 1m; js_content echo.echo; }

        location = /fhir/Observation/gz {
            default_type application/fhir+json;
            add_header Content-Encoding gzip;
            return 200 '{"resourceType":"Observation","id":"gz","subject":{"reference":"Patient/p2"}}';
        }

        location = /fhir/Observation/tp {
            default_type text/plain;
            return 200 '{"resourceType":"Observation","id":"tp","subject":{"reference":"Patient/p2"}}';
        }

        location = /fhir/Observation/nt {
            types {}
            default_type "";
            return 200 '{"resourceType":"Observation","id":"nt","subject":{"reference":"Patient/p2"}}';
        }

        location = /fhir/Observation/dup {
            default_type application/fhir+json;
            return 200 '{"resourceType":"Observation","id":"dup","subject":{"reference":"Patient/p1"},"subject":{"reference":"Patient/p2"}}';
        }

        location = /fhir/Observation/two {
            default_type application/fhir+json;
            return 200 '{"resourceType":"Observation","id":"two","subject":{"reference":"Patient/p1"}}{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}';
        }

        location = /fhir/Observation/xar {
            add_header X-Accel-Redirect /fhir/Patient/p2;
            return 200 '';
        }

        location = /fhir/Observation/r201 {
            default_type application/fhir+json;
            return 201 '{"resourceType":"Observation","id":"r201","subject":{"reference":"Patient/p2"}}';
        }

        location = /fhir/Observation/r203 {
            default_type application/fhir+json;
            return 203 '{"resourceType":"Observation","id":"r203","subject":{"reference":"Patient/p2"}}';
        }


        location @echo { js_content echo.echo; }
    }
}
EOF

$t->write_file('data/fhir/metadata.json', $J->encode({
    resourceType => 'CapabilityStatement', status => 'active' }));

# a FastCGI backend reads "X_HTTP_Method_Override" as the '-' spelling
my $cgi = Welby::CGIBackend->start(proto => 'fastcgi',
    port => $t->port(8082));
$t->run();

###############################################################################
# tokens

my %TOK = (
    p1_all     => { scope => 'patient/*.cruds', patient => 'p1' },
    p1_rs      => { scope => 'patient/*.rs', patient => 'p1' },
    p1_v1read  => { scope => 'patient/*.read', patient => 'p1' },
    p1_v1write => { scope => 'patient/*.write', patient => 'p1' },
    p1_v1all   => { scope => 'patient/*.*', patient => 'p1' },
    p1_obs_r   => { scope => 'patient/Observation.r', patient => 'p1' },
    p1_obs_s   => { scope => 'patient/Observation.s', patient => 'p1' },
    p1_obs_rs  => { scope => 'patient/Observation.rs', patient => 'p1' },
    p1_obs_c   => { scope => 'patient/Observation.c', patient => 'p1' },
    p1_obs_cu  => { scope => 'patient/Observation.cu', patient => 'p1' },
    p1_pat_r   => { scope => 'patient/Patient.r', patient => 'p1' },
    p1_pat_rs  => { scope => 'patient/Patient.rs', patient => 'p1' },
    p1_pat_u   => { scope => 'patient/Patient.u', patient => 'p1' },
    p1_pat_d   => { scope => 'patient/Patient.d', patient => 'p1' },
    p1_lab     => { scope => 'patient/Observation.rs?category=laboratory',
                    patient => 'p1' },
    p1_noclaim => { scope => 'patient/*.rs' },
    p1_bad     => { scope => 'patient/*.sr patient/*.rx patient/Foo.r '
                    . 'patient/*.readwrite patient/*.cruds? patient/*.',
                    patient => 'p1' },
    p1_scp     => { scp => ['patient/*.rs'], patient => 'p1' },
    user_12    => { scope => 'user/*.cruds', patients => ['p1', 'p2'] },
    user_12rs  => { scope => 'user/*.rs', patients => ['p1', 'p2'] },
    user_none  => { scope => 'user/*.rs' },
    user_med   => { scope => 'user/Medication.rs user/Practitioner.r' },
    sys        => { scope => 'system/*.rs', client_id => 'bulk-client' },
    sys_other  => { scope => 'system/*.rs', client_id => 'app-1' },
    openid     => { scope => 'openid fhirUser launch/patient',
                    patient => 'p1' },
    p1_tab     => { scope => "openid\tpatient/*.rs", patient => 'p1' },
    p1_nl      => { scope => "patient/*.rs\npatient/*.cruds", patient => 'p1' },
    p1_upper   => { scope => 'PATIENT/*.RS Patient/*.rs patient/*.RS',
                    patient => 'p1' },
    p1_star_q  => { scope => 'patient/*.rs?x=y', patient => 'p1' },
    p1_pats    => { scope => 'patient/*.rs', patient => 'p1',
                    patients => ['p2'] },
    p1_arr     => { scope => 'patient/*.rs', patient => ['p1', 'p2'] },
    p1_num     => { scope => 'patient/*.rs', patient => 2 },
    p1_ref     => { scope => 'patient/*.rs', patient => 'Patient/p2' },
    p1_comma   => { scope => 'patient/*.rs', patient => 'p1,p2' },
    p1_empty   => { scope => 'patient/*.rs', patient => '' },
    p1_long    => { scope => join(' ', ('patient/Observation.r') x 3000)
                    . ' patient/*.rs', patient => 'p1' },
    sys_pat    => { scope => 'system/Observation.rs', client_id => 'bulk-client',
                    patient => 'p1' },
    user_pat   => { scope => 'user/*.rs', patient => 'p2', patients => ['p1'] },
    mixed      => { scope => 'patient/Patient.read user/Patient.s',
                    patient => 'p1', patients => ['p1'] },
    none       => undef,
);

my %JWT;
for my $name (keys %TOK) {
    next unless $TOK{$name};
    # what a token does not name it does not have (claims() has defaults)
    $JWT{$name} = jwt(key => $key, set => {
        iss => $ISS, aud => $AUD, sub => "user-$name",
        client_id => 'app-1', scope => undef, patient => undef,
        %{ $TOK{$name} } });
}

###############################################################################
# bodies

sub obs {
    my ($subject, %more) = @_;
    return $J->encode({ resourceType => 'Observation', status => 'final',
        code => { text => 'weight' },
        (defined $subject ? (subject => ref_to($subject)) : ()), %more });
}

sub patient { $J->encode({ resourceType => 'Patient', @_ }) }

sub bundle {
    my ($type, @entries) = @_;
    return $J->encode({ resourceType => 'Bundle', type => $type,
        entry => [@entries] });
}

sub entry {
    my ($method, $url, $resource, $full) = @_;
    return { (defined $full ? (fullUrl => $full) : ()),
        ($resource ? (resource => JSON::XS->new->decode($resource)) : ()),
        request => { method => $method, url => $url } };
}

my $ABS = 'http://localhost/fhir';    # the Host the requests send

###############################################################################
# the cases

sub patch { ['application/json-patch+json', $J->encode([@_])] }

my @CASES = (
    # answers the request alone cannot prove
    [p1_rs => GET => '/fhir/Observation/o3/_history', undef,
        '403 response_patient_mismatch history-instance'],
    [p1_rs => GET => '/fhir/Observation/o4', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o5', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o6', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o7', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o8', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o9', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o10', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o11', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o12', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o13', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o14', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o15', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/o16', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o17', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/gz', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/tp', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/nt', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/dup', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/two', undef, '502 response_unverifiable read'],
    [p1_rs => GET => '/fhir/Observation/xar', undef, '403 patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/r201', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/r203', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o3?_summary=count', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o3?_elements=id', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Observation/o3/$meta', undef, '403 patient_unverifiable operation'],
    [p1_rs => GET => '/fhir/Observation/o3/$validate', undef, '403 scope_insufficient operation'],

    # scopes and claims
    [p1_tab => GET => '/fhir/Patient/p1', undef, '401 token_claims ?'],
    [p1_nl => DELETE => '/fhir/Patient/p1', undef, '401 token_claims ?'],
    [p1_upper => GET => '/fhir/Patient/p1', undef, '403 scope_insufficient read'],
    [p1_star_q => GET => '/fhir/Patient/p1', undef, '403 scope_insufficient read'],
    [p1_star_q => GET => '/fhir/Observation?patient=p1', undef, '403 scope_insufficient search-type'],
    [p1_star_q => GET => '/fhir/Observation?patient=p1&x=y', undef, '200 - search-type'],
    [p1_star_q => GET => '/fhir/Patient?_id=p1&x=y&_revinclude=Observation:subject', undef, '403 scope_insufficient search-type'],
    [p1_pats => GET => '/fhir/Patient/p2', undef, '403 patient_mismatch read'],
    [p1_arr => GET => '/fhir/Patient/p2', undef, '401 token_claims ?'],
    [p1_arr => GET => '/fhir/Patient/p1', undef, '401 token_claims ?'],
    [p1_num => GET => '/fhir/Patient/2', undef, '401 token_claims ?'],
    [p1_ref => GET => '/fhir/Patient/p2', undef, '403 patient_mismatch read'],
    [p1_comma => GET => '/fhir/Observation?patient=p1,p2', undef, '403 patient_mismatch search-type'],
    [p1_empty => GET => '/fhir/Observation/o12', undef, '403 scope_insufficient read'],
    [p1_long => GET => '/fhir/Patient/p2', undef, '400 - ?'],
    [sys_pat => GET => '/fhir/Patient/p2', undef, '403 scope_insufficient read'],
    [user_pat => GET => '/fhir/Patient/p2', undef, '403 patient_mismatch read'],
    [mixed => GET => '/fhir/Patient?_id=p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/nb/fhir/Observation/o3', undef, '403 response_patient_mismatch read'],
    [p1_rs => GET => '/nb/fhir/Observation/o1', undef, '200 - read'],
    [none => GET => '/open/fhir/Patient/p2', undef, '200 - read'],
    [p1_all => POST => '/fhir', bundle('batch', map { entry(GET => 'Patient/p1') } 1 .. 2000), '200 - batch'],
    [p1_all => POST => '/fhir', bundle('batch', (map { entry(GET => 'Patient/p1') } 1 .. 2000), entry(GET => 'Patient/p2')), '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir/Observation', ('[' x 5000) . (']' x 5000), '400 fhir_body_invalid create'],
    [p1_all => POST => '/fhir/Observation', obs('Patient/p1', note => [{ text => ('{' x 10) }], x => [ ([[[[[[[[[[1]]]]]]]]]]) x 10 ]), '200 - create'],

    # operations by POST: the inputs in a Parameters body
    [p1_rs => POST => '/fhir/Observation/$lastn?patient=p1', $J->encode({ resourceType => 'Parameters', parameter => [{ name => 'patient', valueString => 'Patient/p2' }] }), '403 fhir_unclassifiable ?'],
    [p1_rs => POST => '/fhir/Patient/p1/$everything', $J->encode({ resourceType => 'Parameters', parameter => [{ name => '_id', valueString => 'p2' }] }), '403 fhir_unclassifiable ?'],
    [p1_rs => POST => '/fhir/Patient/p1/$meta', $J->encode({ resourceType => 'Parameters' }), '200 - operation'],

    # query encodings
    [p1_rs => GET => '/fhir/Observation?Patient=p2', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&PATIENT=p2', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient+=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient%20=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?%20patient=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=+p2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p2%20', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=%2570%2532', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=%C0%B0', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&&patient=p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?=p2&patient=p1', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1#&patient=p2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1;patient=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1,', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&patient:Patient=p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient:Patient:x=p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient:patient=p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=Patient/p1/_history/1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=HTTP://LOCALHOST/fhir/Patient/p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=http://localhost/FHIR/Patient/p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=//localhost/fhir/Patient/p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_id=o3', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?_id=o3', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?identifier=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Patient?identifier=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Patient?link=Patient/p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&link=p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Patient?_id:not=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient?_id=Patient/p2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_list=l1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?_list=l1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?_text=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?_content=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?_query=x&patient=p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?_security=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?_tag:not=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?_source=x', undef, '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_getpages=abc', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir?_getpages=abc', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir?_type=Patient&_id=p2', undef, '403 patient_unbound search-system'],
    [p1_rs => GET => '/fhir?_type=Observation&_type=Condition&patient=p1', undef, '200 - search-system'],
    [p1_rs => GET => '/fhir?_type=Observation,Medication&patient=p1', undef, '200 - search-system'],
    [p1_rs => GET => '/fhir?_type=Observation,Patient&patient=p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir?_type=Patient&_id=p1', undef, '403 patient_unbound search-system'],
    [p1_lab => GET => '/fhir/Observation?patient=p1&category:not=laboratory&category=laboratory', undef, '200 - search-type'],
    [p1_lab => GET => '/fhir/Observation?patient=p1&category:not=laboratory', undef, '403 scope_insufficient search-type'],
    [p1_lab => GET => '/fhir/Patient/p1/Observation?category=laboratory', undef, '200 - search-type'],
    [p1_lab => GET => '/fhir/Patient/p1/Observation?category=laboratory&_include=Observation:subject', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:subject', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?subject=p1&_include=Observation:subject', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?subject=p1&_include=Observation:subject:Group', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:has-member:Observation', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:performer:Patient', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:patient:Patient', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Observation:performer', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Provenance:target', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Observation:subject:Group', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Patient:link', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Group:member', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient/p1/$everything?_type=Observation&_since=2020', undef, '200 - operation'],
    [p1_rs => GET => '/fhir/Patient/p1/$everything?_id=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/p1/$everything?patient=p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/$everything?_id=p1', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation/$lastn?patient=p1&max=3', undef, '200 - operation'],
    [p1_rs => GET => '/fhir/Observation/$expand', undef, '403 operation_unknown operation'],
    [p1_rs => GET => '/fhir/$everything', undef, '403 operation_unknown operation'],
    [p1_rs => GET => '/fhir/Group/g1/$everything', undef, '403 operation_unknown operation'],
    [p1_rs => GET => '/fhir/Group/g1/$export', undef, '403 scope_insufficient operation'],

    # paths
    [p1_rs => GET => '/fhir/Patient/p1/', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/p1/_history/', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient//p2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Patient/p1/../p2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Patient/p1/%2e%2e/p2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Patient%2Fp2', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Patient/p1%00', undef, '400 - ?'],
    [p1_rs => GET => '/fhir/Patient/p1/Observation/o3', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/p1/_history/1/x', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/_search?_id=p2', undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/_search?_type=Patient&_id=p2', undef, '403 patient_unbound search-system'],
    [p1_rs => OPTIONS => '/fhir/Patient/p2', undef, '403 fhir_unclassifiable ?'],
    [p1_rs => HEAD => '/fhir/Patient/p2', undef, '403 patient_mismatch read'],
    [p1_rs => GET => '/fhir/Patient/p2?_format=json&_pretty=true', undef, '403 patient_mismatch read'],
    [p1_rs => GET => '/fhir/Patient/P1', undef, '403 patient_mismatch read'],

    # method overrides in other spellings
    [p1_rs => GET => '/u/fhir/Patient/p1', { 'X_HTTP_Method_Override' => 'DELETE' }, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/u/fhir/Patient/p1', { 'X_HTTP_METHOD' => 'DELETE' }, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/u/fhir/Patient/p1', { 'X_Method_Override' => 'DELETE' }, '403 fhir_unclassifiable ?'],
    [p1_all => POST => '/u/fhir/Observation', { 'If_None_Exist' => 'patient=p2' }, '403 fhir_unclassifiable ?'],

    # writes
    [p1_all => POST => '/fhir/Observation', obs('Patient?_id=p2'), '403 patient_unverifiable create'],
    [p1_all => POST => '/fhir/Observation', obs('Patient/p2/_history/1'), '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', obs('p2'), '403 patient_unverifiable create'],
    [p1_all => POST => '/fhir/Observation', obs('#c', contained => [{ resourceType => 'Patient', id => 'c' }]), '403 patient_unverifiable create'],
    [p1_all => POST => '/fhir/Observation', obs('Patient/p1', contained => [{ resourceType => 'Observation', id => 'c', status => 'final', code => {}, subject => ref_to('Patient/p2') }]), '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', $J->encode({ resourceType => 'Observation', status => 'final', code => {}, subject => { type => 'Patient', id => 'p2' } }), '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', $J->encode({ resourceType => 'Observation', status => 'final', code => {}, subject => [ref_to('Patient/p1'), ref_to('Patient/p2')] }), '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', $J->encode({ resourceType => 'Observation', status => 'final', code => {}, subject => { reference => 'Patient/p1', extension => [{ url => 'x', valueReference => ref_to('Patient/p2') }] } }), '200 - create'],
    [p1_all => POST => '/fhir/Observation', $J->encode({ resourceType => 'Observation', status => 'final', code => {}, subject => { reference => ['Patient/p2'] } }), '403 patient_unverifiable create'],
    [p1_all => POST => '/fhir/Observation', $J->encode({ resourceType => 'Observation', status => 'final', code => {}, subject => { reference => 'Patient/p1' }, _subject => { reference => 'Patient/p2' } }), '200 - create'],
    [p1_all => POST => '/fhir/Observation', '[' . obs('Patient/p2') . ']', '400 fhir_body_invalid create'],
    [p1_all => POST => '/fhir/Observation', ['application/json', obs('Patient/p2')], '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', ['text/plain', obs('Patient/p2')], '415 fhir_format_unsupported create'],
    [p1_all => POST => '/fhir/Observation', ['application/fhir+json;charset=utf-16', obs('Patient/p2')], '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', ['Application/FHIR+JSON', obs('Patient/p2')], '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Provenance', $J->encode({ resourceType => 'Provenance', target => [ref_to('Observation/o3')], patient => ref_to('Patient/p1') }), '403 patient_mismatch create'],
    [p1_all => PUT => '/fhir/Patient/p1', ['application/x-www-form-urlencoded', '_id=p2'], '403 fhir_unclassifiable ?'],
    [p1_all => DELETE => '/fhir/Patient/p1', ['application/x-www-form-urlencoded', '_id=p2'], '403 fhir_unclassifiable ?'],
    [p1_all => GET => '/fhir/Observation?patient=p1', ['application/x-www-form-urlencoded', 'patient=p2'], '403 fhir_unclassifiable ?'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'replace', path => '', value => { resourceType => 'Patient', id => 'p1', link => [{ type => 'seealso', other => ref_to('Patient/p2') }] } }), '403 patient_unverifiable patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'replace', path => '/id', value => 'p2' }), '400 fhir_id_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'add', path => '/link', value => [] }), '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'move', from => '/link', path => '/x' }), '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'copy', from => '/name', path => '/link' }), '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'add', path => '/li~6nk', value => 1 }), '400 fhir_body_invalid patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'add', path => 'link', value => 1 }), '400 fhir_body_invalid patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', patch({ op => 'replace', path => '/active', value => JSON::XS::true }, { op => 'replace', path => '/link/0/other/reference', value => 'Patient/p2' }), '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', ['application/json-patch+json;x=y', $J->encode([{ op => 'add', path => '/link', value => [] }])], '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1', ['application/json', $J->encode([{ op => 'add', path => '/link', value => [] }])], '403 patient_mismatch patch'],

    # Bundles
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'https://evil.test/fhir/Patient/p2')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'http://localhost/fhir/Patient/p2')), '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => '/fhir/Patient/p2')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => '/Patient/p2')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Patient/p1/../p2')), '400 request_malformed batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Patient/p1/%2e%2e/p2')), '400 request_malformed batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Patient%2Fp2')), '400 request_malformed batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Patient/p1?_id=p2')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Observation?patient=p1#&patient=p2')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Observation?patient=p1;patient=p2')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Observation?patient=p2 ')), '400 request_malformed batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => ' Patient/p2')), '400 request_malformed batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => "Patient/p1\nPatient/p2")), '400 request_malformed batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(get => 'Patient/p2')), '400 fhir_body_invalid batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(HEAD => 'Patient/p2')), '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Patient/p2/$everything')), '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'Patient?_id=p2')), '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => '')), '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch', entry(GET => 'metadata')), '200 - batch'],
    [p1_all => POST => '/fhir', bundle('batch', { request => { method => 'GET', url => 'Patient/p1' }, request2 => { method => 'GET', url => 'Patient/p2' } }), '200 - batch'],
    [p1_all => POST => '/fhir', bundle('batch', { request => { method => 'GET', url => 'Patient/p2', ifNoneMatch => 'x' } }), '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('transaction', { request => { method => 'POST', url => 'Observation', ifNoneExist => 'patient=p2' }, resource => JSON::XS->new->decode(obs('Patient/p1')) }), '403 fhir_unclassifiable transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', { request => { method => 'PUT', url => 'Observation?patient=p2' }, resource => JSON::XS->new->decode(obs('Patient/p1')) }), '403 fhir_unclassifiable transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', { request => { method => 'DELETE', url => 'Observation?patient=p2' } }), '403 fhir_unclassifiable transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', { request => { method => 'POST', url => 'Observation' } }), '400 fhir_body_invalid transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', { request => { method => 'PATCH', url => 'Patient/p1' }, resource => { resourceType => 'Binary', contentType => 'application/json-patch+json', data => 'W3sib3AiOiJhZGQiLCJwYXRoIjoiL2xpbmsiLCJ2YWx1ZSI6W119XQ==' } }), '415 fhir_format_unsupported transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', entry(POST => 'Observation', obs('urn:uuid:1')), entry(PUT => 'Patient/p2', patient(id => 'p2'), 'urn:uuid:1')), '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', entry(POST => 'Observation', obs('urn:uuid:1')), entry(GET => 'Patient/p2', undef, 'urn:uuid:1')), '403 patient_unverifiable transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', entry(POST => 'Observation', obs('urn:uuid:1')), entry(PUT => 'Patient/p1', patient(id => 'p2'), 'urn:uuid:1')), '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', entry(POST => 'Observation', obs('urn:uuid:1'), 'urn:uuid:1')), '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', entry(POST => 'Observation', obs('Patient/p1'), 'Patient/p2')), '200 - transaction'],
    [p1_all => POST => '/fhir', bundle('transaction', entry(POST => 'Observation', obs('Patient/p1'), 'http://localhost/fhir/Observation/x'), entry(POST => 'Observation', obs('Observation/x'))), '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', $J->encode({ resourceType => 'Bundle', type => 'transaction', entry => {} }), '400 fhir_body_invalid transaction'],
    [p1_all => POST => '/fhir', $J->encode({ resourceType => 'Bundle', type => 'transaction' }), '200 - transaction'],
    [p1_all => POST => '/fhir', $J->encode({ resourceType => 'Bundle', type => ['transaction'], entry => [entry(GET => 'Patient/p2')] }), '400 fhir_body_invalid ?'],
    [p1_all => POST => '/fhir', ['application/x-www-form-urlencoded', 'x=1'], '403 fhir_unclassifiable ?'],
    [p1_all => POST => '/fhir/_search', ['application/x-www-form-urlencoded', '_type=Patient&_id=p2'], '403 fhir_unclassifiable ?'],
    [p1_all => POST => '/fhir/Patient/_search', ['application/x-www-form-urlencoded', '_id=p2'], '403 patient_mismatch search-type'],
    [p1_all => POST => '/fhir/Patient/_search', ['application/x-www-form-urlencoded; charset=utf-8', '_id=p2'], '403 patient_mismatch search-type'],
    [p1_all => POST => '/fhir/Patient/_search', ['application/fhir+json', patient()], '403 fhir_unclassifiable ?'],
);

###############################################################################

my $n = 0;

sub outcome_reason {
    my ($r) = @_;
    my $j = eval { JSON::XS->new->decode($r->body) };
    return ($j && ref $j eq 'HASH' && ($j->{resourceType} // '') eq
        'OperationOutcome')
        ? (eval { $j->{issue}[0]{details}{coding}[0]{code} } // '-') : '-';
}

sub audit_of {
    my ($id) = @_;
    return undef unless defined $id;
    my @lines;
    $t->wait_for(sub {
        @lines = grep { index($_, "\"id\":\"$id\"") >= 0 }
            split /\n/, $t->read_file('audit.log');
        return scalar @lines;
    });
    my @a = grep { ($_->{id} // '') eq $id }
        map { eval { JSON::XS->new->decode($_) } // {} } @lines;
    return @a == 1 ? $a[0] : { count => scalar @a };
}

plan(tests => 2 * @CASES);

for my $c (@CASES) {
    my ($tok, $method, $uri, $body, $expect) = @$c;
    my ($status, $reason, $interaction) = split / /, $expect;

    my @h;
    push @h, "Authorization: Bearer $JWT{$tok}" if $JWT{$tok};
    my ($ct, $content);
    if (ref $body eq 'ARRAY') {
        ($ct, $content) = @$body;
    } elsif (ref $body eq 'HASH') {
        push @h, map { "$_: $body->{$_}" } sort keys %$body;
    } elsif (defined $body) {
        ($ct, $content) = ('application/fhir+json', $body);
    }
    push @h, "Content-Type: $ct" if defined $ct;

    my $r = parse_response(http_req(method => $method, uri => $uri,
        headers => \@h, (defined $content ? (body => $content) : ())));

    my $name = "$tok $method $uri"
        . (defined $content ? ' ' . substr($content, 0, 60) : '');

    my $got = $r ? $r->status . ' '
        . ($method eq 'HEAD' || $r->status < 400 ? '-' : outcome_reason($r))
        : 'no response';
    my $want = $status . ' '
        . ($status < 400 || $method eq 'HEAD' ? '-' : $reason);
    is($got, $want, "$name: $want");

    my $a = audit_of($r && $r->header('X-Request-Id')) // {};
    my $rec = join ' ', ($a->{reason} // '-'),
        ($interaction eq '?' ? '?' : ($a->{fhir}{interaction} // '-'));
    is($rec, "$reason $interaction",
        "$name: the audit record says $reason $interaction");
}
