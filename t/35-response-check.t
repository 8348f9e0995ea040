#!/usr/bin/perl

# The response check: an answer the request alone cannot prove to be the
# token's patient's is held, parsed and checked before any byte of it
# reaches the client.  The backend is a second nginx serving static
# FHIR JSON: Observation o1 of p1, o3 of p2, Patients, a 20-entry
# searchset with one foreign entry and one without, answers that cannot
# be checked (HTML, gzip, br, a 206, duplicate members, too large with
# and without Content-Length) and a 404.  What passes must be byte for
# byte the backend's; what is refused must hold none of it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use IO::Compress::Gzip qw(gzip);
use Welby::Nginx qw(http http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();
my $json = JSON::PP->new->utf8->canonical;

###############################################################################
# Who asks: the one place that says how a request gets "a token for
# patient p1" (or for a user reaching several patients).

my $key = gen_key('ES256', kid => 'k35');
write_jwks("$d/keys.jwks", $key);

sub bearer {
    my (%set) = @_;
    return 'Authorization: Bearer ' . jwt(key => $key, set => {
        iss => 'https://issuer.test', aud => 'https://fhir.test',
        scope => undef, patient => undef, %set });
}

sub as_patient {
    my ($patient) = @_;
    return bearer(scope => 'patient/*.rs', patient => $patient);
}

sub as_user {
    my (@patients) = @_;
    return bearer(scope => 'user/*.rs', patients => [@patients]);
}

###############################################################################
# The backend's files

my $SECRET = 'FOREIGN-DATA-p2';
my %file;

sub obs {
    my ($id, $ref, %more) = @_;
    return $json->encode({ resourceType => 'Observation', id => $id,
        status => 'final', code => { text => 'glucose' },
        subject => { reference => $ref }, %more });
}

sub put {
    my ($path, $content) = @_;
    my $f = "$d/b/fhir/$path";
    (my $dir = $f) =~ s{/[^/]+\z}{};
    mkdir "$d/b"; mkdir "$d/b/fhir"; mkdir $dir;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $content;
    close $fh;
    $file{$path} = $content;
}

put('Observation/o1', obs('o1', 'Patient/p1', valueString => 'p1 own'));
put('Observation/o3', obs('o3', 'Patient/p2', valueString => $SECRET));
put('Observation/o-abs', obs('o-abs', 'http://localhost/fhir/Patient/p1'));
put('Observation/o-other', obs('o-other', 'http://elsewhere/fhir/Patient/p1',
    valueString => $SECRET));
put('Patient/p1', $json->encode({ resourceType => 'Patient', id => 'p1' }));
put('Patient/p2', $json->encode({ resourceType => 'Patient', id => 'p2',
    name => [{ text => $SECRET }] }));

sub bundle {
    my ($type, $foreign) = @_;
    my @entries = map {
        my $p = defined $foreign && $_ == $foreign ? 'p2' : 'p1';
        { fullUrl => "http://localhost/fhir/$type/x$_",
          resource => $type eq 'Observation'
              ? $json->decode(obs("x$_", "Patient/$p",
                    valueString => $p eq 'p2' ? $SECRET : 'ok'))
              : { resourceType => $type, id => "x$_",
                  subject => { reference => "Patient/$p" } },
          search => { mode => 'match' } }
    } 1 .. 20;
    return $json->encode({ resourceType => 'Bundle', type => 'searchset',
        total => 20, entry => \@entries });
}

# a server that ignored an unknown parameter: one entry of p2 among p1's
put('Observation-search', bundle('Observation', 13));
put('Condition-search', bundle('Condition'));

put('Observation/o-html', "<html><body>$SECRET</body></html>");
my $gz;
gzip(\obs('o-gzip', 'Patient/p1'), \$gz);
put('Observation/o-gzip.gz', $gz);
put('Observation/o-br', obs('o-br', 'Patient/p1'));
put('Observation/o-text', obs('o-text', 'Patient/p1'));
put('Observation/o-gz-ok', obs('o-gz-ok', 'Patient/p1',
    note => [{ text => 'x' x 2000 }]));
put('Observation/o-dup', '{"resourceType":"Observation","id":"o-dup",'
    . '"subject":{"reference":"Patient/p1"},'
    . '"subject":{"reference":"Patient/p2"},"valueString":"' . $SECRET . '"}');

# over the 64k bound, served with and without Content-Length
my $big = obs('o-big', 'Patient/p1',
    note => [{ text => "$SECRET " . ('y' x 100000) }]);
put('Observation/o-big', $big);
put('Observation/o-chunked-big', $big);

# within the bound but beyond the first 16k buffer, chunked
put('Observation/o-long', obs('o-long', 'Patient/p1',
    note => [{ text => 'z' x 40000 }]));

my $oo404 = '{"resourceType":"OperationOutcome","id":"backend-404"}';

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;
    proxy_cache_path %%TESTDIR%%/cache keys_zone=answers:1m;
    sendfile on;    # a cache hit is a file the filter must get in memory

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_fhir_base /fhir;
        welby_fhir_search_check on;
        welby_fhir_system_clients sys-35;
        welby_fhir_response_max_size 64k;
        add_header X-Reason $welby_reason always;

        location /fhir/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/fhir/ {
            welby_mode detect;
            welby_fhir_base /detect/fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /hide/fhir/ {
            welby_fhir_base /hide/fhir;
            welby_fhir_response_status 404;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /unbuffered/fhir/ {
            welby_fhir_base /unbuffered/fhir;
            proxy_buffering off;
            proxy_buffer_size 1k;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        # a second read is a cache hit, sent from the cache's file
        location /cached/fhir/ {
            welby_fhir_base /cached/fhir;
            proxy_cache answers;
            proxy_cache_valid 200 10m;
            add_header X-Cache $upstream_cache_status always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /range/fhir/ {
            welby_fhir_base /range/fhir;
            proxy_set_header Range bytes=0-;    # all of it, as a 206
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        root %%TESTDIR%%/b;
        default_type application/fhir+json;

        location /fhir/ {
        }

        location = /fhir/Observation {
            try_files /fhir/Observation-search =404;
        }

        location = /fhir/Condition {
            try_files /fhir/Condition-search =404;
        }

        location = /fhir/Observation/o-html {
            default_type text/html;
        }

        location = /fhir/Observation/o-text {
            default_type text/plain;
        }

        location = /fhir/Observation/o-gzip {
            gzip_static always;
        }

        location = /fhir/Observation/o-br {
            add_header Content-Encoding br;
        }

        location = /fhir/Observation/o-gz-ok {
            gzip on;
            gzip_http_version 1.0;    # what proxy_pass speaks
            gzip_types application/fhir+json;
            gzip_min_length 1;
        }

        location = /fhir/Observation/o404 {
            return 404 '{"resourceType":"OperationOutcome","id":"backend-404"}';
        }

        location ~ ^/fhir/Observation/o-(chunked-big|long)$ {
            ssi on;
            ssi_types application/fhir+json;
        }
    }
}
EOF

$t->run();

###############################################################################

# without a patient's or a user's token: a system client's, whose
# answers need no check
sub get {
    my ($uri, @headers) = @_;
    push @headers, bearer(scope => 'system/*.rs', client_id => 'sys-35')
        unless grep { /^Authorization:/ } @headers;
    return parse_response(http_req(uri => $uri, headers => \@headers));
}

sub record {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // 'none';
    my $rec;
    $t->wait_for(sub {
        ($rec) = grep { ($_->{id} // '') eq $id }
            map { eval { $json->decode($_) } // {} }
            split /\n/, $t->read_file('audit.log');
        return $rec;
    });
    return $rec || {};
}

# status, reason, outcome, upstream status of a record, as one string
sub audit {
    my ($r) = @_;
    my $rec = record($r);
    return join '/', map { $_ // '-' } $rec->{http}{status}, $rec->{reason},
        $rec->{outcome}, $rec->{upstream}{status};
}

sub passes {
    my ($name, $uri, $path, @headers) = @_;
    my $r = get($uri, @headers);
    is($r && $r->status, 200, "$name: 200");
    ok($r && defined $r->body && $r->body eq $file{$path},
        "$name: the backend's answer, byte for byte");
    is($r && $r->header('Content-Length'), length $file{$path},
        "$name: its Content-Length");
    return $r;
}

sub refused {
    my ($name, $uri, $status, $reason, @headers) = @_;
    my $r = get($uri, @headers);
    my $j = $r && $r->json;
    is($r && $r->status, $status, "$name: $status");
    is($j && $j->{issue}[0]{details}{coding}[0]{code}, $reason,
        "$name: an OperationOutcome of $reason");
    ok($r && index($r->raw, $SECRET) < 0 && index($r->raw, 'Patient/p2') < 0,
        "$name: nothing of the backend's answer");
    return $r;
}

###############################################################################
# instance reads

my $r = passes('o1 of p1, as p1', '/fhir/Observation/o1', 'Observation/o1',
    as_patient('p1'));
is(audit($r), '200/-/allow/200', 'o1 of p1: audited as allowed');

$r = refused('o3 of p2, as p1', '/fhir/Observation/o3', 403,
    'response_patient_mismatch', as_patient('p1'));
is($r && $r->header('Content-Type'), 'application/fhir+json',
    'o3 refused: Content-Type of the refusal');
is($r && $r->header('Cache-Control'), 'no-store',
    'o3 refused: Cache-Control no-store');
is($r && scalar(() = $r->header('X-Request-Id')), 1,
    'o3 refused: X-Request-Id once');
is($r && join(',', grep { /^(etag|last-modified|accept-ranges)$/i }
    $r->header_names), '', 'o3 refused: no header of the backend\'s answer');
is($r && $r->header('Content-Length'), $r && length $r->body,
    'o3 refused: Content-Length of the refusal');
is($r && $r->header('X-Reason'), 'response_patient_mismatch',
    'o3 refused: $welby_reason');
is(audit($r), '403/response_patient_mismatch/deny/200',
    'o3 refused: audited with the reason and the backend\'s 200');
my $id = $r && $r->header('X-Request-Id') // 'none';
ok(scalar $t->wait_for_log(qr/\[notice\].*\Q welby: refused id:$id\E
    \Q step:response reason:response_patient_mismatch \E/x),
    'o3 refused: the notice line with step response');

passes('o3 without the check', '/fhir/Observation/o3', 'Observation/o3');
passes('o3 as a user reaching p1 and p2', '/fhir/Observation/o3',
    'Observation/o3', as_user('p1', 'p2'));
refused('o3 as a user reaching p1 and p3', '/fhir/Observation/o3', 403,
    'response_patient_mismatch', as_user('p1', 'p3'));

passes('Patient p1 as p1', '/fhir/Patient/p1', 'Patient/p1',
    as_patient('p1'));
# the request names p2: refused before the backend, not on its answer
refused('Patient p2 as p1', '/fhir/Patient/p2', 403,
    'patient_mismatch', as_patient('p1'));

passes('a reference absolute to this base', '/fhir/Observation/o-abs',
    'Observation/o-abs', as_patient('p1'));
refused('a reference to another server', '/fhir/Observation/o-other', 502,
    'response_unverifiable', as_patient('p1'));

###############################################################################
# searchset Bundles of 20 entries

passes('20 Conditions of p1', '/fhir/Condition?patient=p1',
    'Condition-search', as_patient('p1'));
$r = refused('20 Observations, one of p2', '/fhir/Observation?patient=p1',
    403, 'response_patient_mismatch', as_patient('p1'));
is(audit($r), '403/response_patient_mismatch/deny/200',
    'the foreign entry: audited');

###############################################################################
# answers that cannot be checked fail closed

$r = refused('an HTML answer', '/fhir/Observation/o-html', 502,
    'response_unverifiable', as_patient('p1'));
is(audit($r), '502/response_unverifiable/deny/200',
    'an HTML answer: audited');
refused('JSON of p1 as text/plain', '/fhir/Observation/o-text', 502,
    'response_unverifiable', as_patient('p1'));
refused('a gzip answer', '/fhir/Observation/o-gzip', 502,
    'response_unverifiable', as_patient('p1'));
refused('a br answer', '/fhir/Observation/o-br', 502,
    'response_unverifiable', as_patient('p1'));
refused('duplicate members', '/fhir/Observation/o-dup', 502,
    'response_unverifiable', as_patient('p1'));
refused('above the bound, with Content-Length', '/fhir/Observation/o-big',
    502, 'response_unverifiable', as_patient('p1'));
$r = refused('above the bound, chunked', '/fhir/Observation/o-chunked-big',
    502, 'response_unverifiable', as_patient('p1'));
is(audit($r), '502/response_unverifiable/deny/200',
    'above the bound, chunked: audited');
refused('a 206 the backend sends', '/range/fhir/Observation/o1', 502,
    'response_unverifiable', as_patient('p1'));

$r = parse_response(http_req(method => 'HEAD', uri => '/fhir/Observation/o1',
    headers => [as_patient('p1')]));
is($r && $r->status, 403, 'HEAD: no body to check, refused by the policy');
is($r && $r->header('X-Reason'), 'patient_unverifiable',
    'HEAD: patient_unverifiable');

# the controls: the backend does send those

$r = get('/fhir/Observation/o-gzip');
is($r && $r->header('Content-Encoding'), 'gzip',
    'control: the gzip answer without the check is gzip');
$r = get('/range/fhir/Observation/o1');
is($r && $r->status, 206, 'control: the Range answer without the check');

###############################################################################
# what the request may not ask of the backend

$r = get('/fhir/Observation/o-gz-ok', 'Accept-Encoding: gzip');
is($r && $r->header('Content-Encoding'), 'gzip',
    'control: Accept-Encoding gets gzip without the check');
$r = passes('Accept-Encoding with the check', '/fhir/Observation/o-gz-ok',
    'Observation/o-gz-ok', 'Accept-Encoding: gzip', as_patient('p1'));
is($r && $r->header('Content-Encoding'), undef,
    'Accept-Encoding with the check: not compressed');

$r = get('/fhir/Observation/o1', 'Range: bytes=0-9');
is($r && $r->status, 206, 'control: Range gets 206 without the check');
passes('Range with the check', '/fhir/Observation/o1', 'Observation/o1',
    'Range: bytes=0-9', as_patient('p1'));

$r = get('/fhir/Observation/o3');
my $etag = $r && $r->header('ETag') // 'none';
my $lm = $r && $r->header('Last-Modified') // 'none';
$r = get('/fhir/Observation/o3', "If-None-Match: $etag");
is($r && $r->status, 304, 'control: If-None-Match gets 304 without the check');
refused('If-None-Match with the check', '/fhir/Observation/o3', 403,
    'response_patient_mismatch', "If-None-Match: $etag", as_patient('p1'));
refused('If-Modified-Since with the check', '/fhir/Observation/o3', 403,
    'response_patient_mismatch', "If-Modified-Since: $lm", as_patient('p1'));

###############################################################################
# what passes unchecked, and what is checked beyond one buffer

$r = get('/fhir/Observation/o404', as_patient('p1'));
is($r && $r->status, 404, 'a 404 of the backend: 404');
is($r && $r->body, $oo404, 'a 404 of the backend: its OperationOutcome');

$r = passes('40k chunked, within the bound', '/fhir/Observation/o-long',
    'Observation/o-long', as_patient('p1'));
is($r && $r->header('Transfer-Encoding'), undef,
    '40k chunked: sent with a Content-Length instead');

###############################################################################
# one connection: a refusal whose backend answer was dropped, then more

{
    my $h = join '', map { "$_\r\n" } as_patient('p1');
    my $raw = http(join '',
        "GET /fhir/Observation/o-big HTTP/1.1\r\nHost: localhost\r\n$h\r\n",
        "GET /fhir/Observation/o3 HTTP/1.1\r\nHost: localhost\r\n$h\r\n",
        "GET /fhir/Observation/o1 HTTP/1.1\r\nHost: localhost\r\n$h"
        . "Connection: close\r\n\r\n");
    my @status = ($raw // "") =~ m{HTTP/1\.1 (\d{3}) }g;
    is("@status", '502 403 200',
        'one connection: two refusals, then the answer');
    ok(defined $raw && substr($raw, -length $file{'Observation/o1'})
        eq $file{'Observation/o1'} && index($raw, $SECRET) < 0,
        'one connection: the last answer whole, nothing of the refused');
}

###############################################################################
# answers that reach the filter otherwise: unbuffered, and from a cache
# file (each read twice: a miss, then a hit)

for my $how (qw(unbuffered cached)) {
    for my $n (1, 2) {
        my $which = $how eq 'cached' ? ($n == 1 ? ', a miss' : ', a hit') : '';
        next if $how eq 'unbuffered' && $n == 2;
        my $r = passes("$how: o1 of p1$which", "/$how/fhir/Observation/o1",
            'Observation/o1', as_patient('p1'));
        refused("$how: o3 of p2$which", "/$how/fhir/Observation/o3", 403,
            'response_patient_mismatch', as_patient('p1'));
        passes("$how: 40k chunked$which", "/$how/fhir/Observation/o-long",
            'Observation/o-long', as_patient('p1'));
        passes("$how: 20 Conditions of p1$which",
            "/$how/fhir/Condition?patient=p1", 'Condition-search',
            as_patient('p1'));
        refused("$how: a foreign entry$which",
            "/$how/fhir/Observation?patient=p1", 403,
            'response_patient_mismatch', as_patient('p1'));
        is($r && $r->header('X-Cache'), $n == 1 ? 'MISS' : 'HIT',
            "cached: o1 was a " . ($n == 1 ? 'miss' : 'hit'))
            if $how eq 'cached';
    }
    refused("$how: above the bound, chunked",
        "/$how/fhir/Observation/o-chunked-big", 502,
        'response_unverifiable', as_patient('p1'));
}
$r = get('/cached/fhir/Observation/o3', as_patient('p1'));
is($r && $r->header('X-Cache'), 'HIT', 'cached: o3 of p2 was a hit');

###############################################################################
# welby_fhir_response_status 404

refused('o3 under welby_fhir_response_status 404', '/hide/fhir/Observation/o3',
    404, 'response_patient_mismatch', as_patient('p1'));
refused('an HTML answer under welby_fhir_response_status 404',
    '/hide/fhir/Observation/o-html', 502, 'response_unverifiable',
    as_patient('p1'));

###############################################################################
# detect mode: the answer passes, the reason is recorded

$r = get('/detect/fhir/Observation/o3', as_patient('p1'));
is($r && $r->status, 200, 'detect: o3 passes');
is($r && $r->body, $file{'Observation/o3'}, 'detect: o3 as the backend sent it');
is(audit($r), '200/response_patient_mismatch/allow/200',
    'detect: audited with the reason');
$id = $r && $r->header('X-Request-Id') // 'none';
ok(scalar $t->wait_for_log(qr/\[warn\].*\Q welby: detect id:$id\E
    \Q step:response reason:response_patient_mismatch \E/x),
    'detect: the warn line');

$r = get('/detect/fhir/Observation/o-chunked-big', as_patient('p1'));
is($r && $r->status, 200, 'detect: above the bound, chunked, passes');
ok($r && defined $r->body && $r->body eq $big,
    'detect: above the bound, chunked, whole');
$r = get('/detect/fhir/Observation/o-big', as_patient('p1'));
ok($r && $r->status == 200 && defined $r->body && $r->body eq $big,
    'detect: above the bound, with Content-Length, whole');
is($r && $r->header('X-Reason'), 'response_unverifiable',
    'detect: above the bound: $welby_reason');

###############################################################################
# the directives' errors

for my $case (
    [ 'welby_fhir_response_status 500', 'invalid welby_fhir_response_status '
      . '"500", it must be 403 or 404' ],
    [ 'welby_fhir_response_status 403; welby_fhir_response_status 404',
      '"welby_fhir_response_status" directive is duplicate' ],
    [ 'welby_fhir_response_max_size big', '"welby_fhir_response_max_size" '
      . 'directive invalid value' ],
    [ 'welby_fhir_search_check yes', 'invalid value "yes" in '
      . '"welby_fhir_search_check" directive, it must be "on" or "off"' ])
{
    my ($directive, $msg) = @$case;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    %%TEST_GLOBALS_HTTP%%
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        location / { welby on; welby_tls off; $directive; }
    }
}
EOF
    my ($code, $out) = $t->test_config('bad.conf');
    ok($code != 0 && $out =~ /\[emerg\] \Q$msg\E/,
        "nginx -t refuses $directive: $msg") or diag($out);
}

###############################################################################

unlike($t->read_file('error.log'), qr/\Q$SECRET\E/,
    'the error log holds nothing of the answers');

$t->done_testing();
