#!/usr/bin/perl

# The body step (welby_body_max_size, $welby_body_json): under a FHIR base
# the request body is read in the access phase, whole, before the backend
# is contacted, from memory or from nginx's temporary file, sent with
# Content-Length or chunked, all at once or slowly (the pipeline waits and
# resumes at the body step, never re-running the steps before it).  The
# backend, which computes a SHA-256 of what it received, gets the exact
# bytes, with proxy_request_buffering on or off.  A body over
# welby_body_max_size is refused 413 body_too_large, before it is read
# when its length is announced; nginx's own refusals while reading
# (client_max_body_size, a timeout, a client that left) keep nginx's
# status; each request has exactly one audit record.  JSON bodies (by
# Content-Type) are parsed once: $welby_body_json is "ok" or "error".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use JSON::XS ();
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

# the backend: what it received, as length and SHA-256 (njs reads a body
# that fits its client_body_buffer_size)
$t->write_file('sha.js', <<'EOF');
function sha(r) {
    var b;
    if (r.headersIn['Content-Length'] !== '0') {
        b = r.requestBuffer;    /* an empty one is detached */
    }
    var h = require('crypto').createHash('sha256');
    h.update(b === undefined ? '' : b);
    r.headersOut['Content-Type'] = 'application/json';
    r.return(200, JSON.stringify({
        uri: r.variables.request_uri,
        len: b === undefined ? 0 : b.length,
        sha256: h.digest('hex'),
        sub: r.headersIn['X-Welby-Sub'] || null
    }) + '\n');
}
export default { sha };
EOF

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_audit_log %%TESTDIR%%/audit.log;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;

    js_import sha from %%TESTDIR%%/sha.js;

    log_format backend '$http_x_marker';

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_token off;
        welby_body_max_size 64k;
        client_body_buffer_size 128k;
        client_max_body_size 1m;

        add_header X-Body-Json "[$welby_body_json]" always;

        # in memory
        location /fhir/ {
            welby_fhir_base /fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # in nginx's temporary file
        location /file/ {
            welby_fhir_base /file;
            client_body_buffer_size 1k;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /fileonly/ {
            welby_fhir_base /fileonly;
            client_body_in_file_only clean;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # the backend would have it as it arrives
        location /unbuf/ {
            welby_fhir_base /unbuf;
            client_body_buffer_size 1k;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # nginx's bound below the module's
        location /limit/ {
            welby_fhir_base /limit;
            client_max_body_size 8k;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /slow/ {
            welby_fhir_base /slow;
            client_body_timeout 1s;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /gone/ {
            welby_fhir_base /gone;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # no FHIR base: the body step does not read it
        location /plain/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # a token is required
        location /tok/ {
            welby_fhir_base /tok;
            welby_token bearer;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/backend.log backend;
        client_body_buffer_size 4m;
        client_max_body_size 8m;

        location / {
            js_content sha.sha;
        }
    }
}
EOF

$t->run()->plan(76);

my $CT = 'Content-Type: application/fhir+json';
my $seq = 0;

# a JSON Observation of about $n bytes, its bytes not all ASCII
sub obs {
    my ($n) = @_;
    my $pad = "\x{e9}t\x{e9} " x int(($n + 5) / 6);
    my $j = JSON::XS->new->utf8->canonical->encode({
        resourceType => 'Observation', status => 'final',
        note => [{ text => $pad }] });
    return $j;
}

sub chunked {
    my ($body, $size) = @_;
    my $out = '';
    for (my $i = 0; $i < length $body; $i += $size) {
        my $c = substr($body, $i, $size);
        $out .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    return $out . "0\r\n\r\n";
}

# POST with a Content-Length (default) or chunked body; a marker header
# names the request in the backend's log (a query would be classified)
sub post {
    my ($path, $body, %o) = @_;
    my $m = 'm=' . ++$seq;
    my @h = ($o{ct} // $CT, "X-Marker: $m");
    push @h, "Authorization: Bearer $o{token}" if $o{token};
    my $send = $body;
    if ($o{chunked}) {
        push @h, 'Transfer-Encoding: chunked';
        $send = chunked($body, $o{chunked});
    }
    my $r = parse_response(http_req(method => 'POST', uri => $path,
        headers => \@h, body => $send, %{ $o{http} || {} }));
    return wantarray ? ($r, $m) : $r;
}

sub got {
    my ($r) = @_;
    my $j = $r && $r->status == 200 && $r->json;
    return $j ? "$j->{len} $j->{sha256}" : 'no backend answer';
}

sub want {
    my ($body) = @_;
    return length($body) . ' ' . sha256_hex($body);
}

sub reason_of {
    my ($r) = @_;
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } // '');
}

sub records {
    return map { eval { JSON::XS->new->decode($_) } // {} }
        split /\n/, $t->read_file('audit.log');
}

# the one audit record of a response, by its request id: after a body
# nginx lingers on the connection (a refused one, or one it read in part)
# the record is written when nginx closes it, so it is waited for
sub audit {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return {};
    my @a;
    $t->wait_for(sub {
        @a = grep { ($_->{id} // '') eq $id } records();
        return scalar @a;
    }, 5);
    return @a == 1 ? $a[0] : { count => scalar @a };
}

# the audit records of the requests to a path that only one request uses:
# for a request nginx ended without a response, the record is written
# when nginx closes the connection, so it is waited for
sub audit_by_path {
    my ($path) = @_;
    my @a;
    $t->wait_for(sub {
        @a = grep { ($_->{http}{path} // '') eq $path } records();
        return scalar @a;
    }, 5);
    return @a;
}

sub record {
    my ($a) = @_;
    return join ' ', map { $_ // '-' } ($a->{count} // 1),
        $a->{http}{status}, $a->{outcome}, $a->{reason};
}

sub backend_saw {
    my ($m) = @_;
    return scalar grep { $_ eq $m }
        split /\n/, $t->read_file('backend.log');
}

# how often a line of the pipeline's was written for a request id
sub count_log {
    my ($re, $r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return -1;
    return scalar grep { /$re/ && /\bid:\Q$id\E(?:\W|$)/ }
        split /\n/, $t->read_file('error.log');
}

###############################################################################
# in memory, in a file, chunked: the backend gets the exact bytes

my $small = obs(2000);
my $big = obs(40000);

for my $case (
    [ 'in memory, Content-Length', '/fhir/Observation', $small ],
    [ 'in memory, chunked', '/fhir/Observation', $small, 700 ],
    [ 'in a file, Content-Length', '/file/Observation', $big ],
    [ 'in a file, chunked', '/file/Observation', $big, 4096 ],
    [ 'client_body_in_file_only', '/fileonly/Observation', $small ],
    [ 'proxy_request_buffering off, Content-Length', '/unbuf/Observation',
      $big ],
    [ 'proxy_request_buffering off, chunked', '/unbuf/Observation', $big,
      3000 ],
) {
    my ($what, $path, $body, $chunk) = @$case;
    my $r = post($path, $body, chunked => $chunk);
    is(got($r), want($body), "$what: the backend gets the exact bytes");
    is($r && $r->header('X-Body-Json'), '[ok]', "$what: the JSON parsed");
    is(record(audit($r)), '1 200 allow -', "$what: one record, allow");
}

my ($r0, $m0) = post('/fhir/Observation', $small);
$t->wait_for(sub { backend_saw($m0) }, 5);
is(backend_saw($m0), 1,
    'an allowed body: the backend\'s log names it once (control for the '
    . 'refusals below)');

# the body arrives after the headers: the pipeline waits at the body step

my $slow_req = "POST /fhir/Observation HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\n$CT\r\nContent-Length: " . length($big)
    . "\r\n\r\n";
my $r = parse_response(http($slow_req, body => $big, sleep => 0.3));
is(got($r), want($big),
    'the body sent after a pause: the backend gets the exact bytes');
is($r && $r->header('X-Body-Json'), '[ok]',
    'the body sent after a pause: the JSON parsed');
is(count_log(qr/welby: pipeline run id:\S+ from step 0 \(tls\)/, $r)
    . ' ' . count_log(qr/welby: pipeline run id:\S+ from step \d+ \(body\)/,
                      $r), '1 1',
    'the body sent after a pause: the pipeline waited and resumed at the '
    . 'body step');
is(count_log(qr/welby: step:classify /, $r), 1,
    'the body sent after a pause: the steps before the body ran once');
is(record(audit($r)), '1 200 allow -',
    'the body sent after a pause: one record, allow');

# a token required: verified once, though the pipeline ran twice

my $tok = jwt(key => $key, set => { sub => 'nurse-33',
    scope => 'patient/Observation.c' });
my $body_tok = '{"resourceType":"Observation","status":"final",'
    . '"subject":{"reference":"Patient/p1"}}' . (' ' x 3000);
$slow_req = "POST /tok/Observation HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\n$CT\r\nAuthorization: Bearer $tok\r\n"
    . "Content-Length: " . length($body_tok) . "\r\n\r\n";
$r = parse_response(http($slow_req, body => $body_tok, sleep => 0.3));
is(got($r), want($body_tok),
    'a slow body with a token: the backend gets the exact bytes');
is($r && $r->json && $r->json->{sub}, 'nurse-33',
    'a slow body with a token: the backend gets the token\'s identity');
is(count_log(qr/welby: step:token /, $r), 1,
    'a slow body with a token: the token step ran once');
is(count_log(qr/welby: pipeline run /, $r), 2,
    'a slow body with a token: the pipeline ran twice (waited, resumed)');

###############################################################################
# welby_body_max_size

my $over = obs(70000);
my $m;
($r, $m) = post('/fhir/Observation', $over);
is(reason_of($r), '413 body_too_large',
    'Content-Length over welby_body_max_size: 413 body_too_large');
is(record(audit($r)), '1 413 deny body_too_large',
    'Content-Length over welby_body_max_size: one record, body_too_large');
is(backend_saw($m), 0,
    'Content-Length over welby_body_max_size: the backend never saw it');
is(count_log(qr/welby: body read /, $r), 0,
    'Content-Length over welby_body_max_size: refused before reading');

($r, $m) = post('/fhir/Observation', $over, chunked => 8000);
is(reason_of($r), '413 body_too_large',
    'chunked over welby_body_max_size: 413 body_too_large');
is(record(audit($r)), '1 413 deny body_too_large',
    'chunked over welby_body_max_size: one record, body_too_large');
is(backend_saw($m), 0, 'chunked over welby_body_max_size: no backend');

my $at = obs(65536 - 200);
$at .= ' ' x (65536 - length $at);
($r, $m) = post('/fhir/Observation', $at);
is(got($r), want($at),
    'exactly welby_body_max_size: allowed, the exact bytes reach the backend');

($r, $m) = post('/plain/x', $over);
is(got($r), want($over),
    'no FHIR base: the body step does not read or bound the body');
is($r && $r->header('X-Body-Json'), '[]',
    'no FHIR base: $welby_body_json is empty');

###############################################################################
# nginx's own refusals: its status, one record, no backend

my $nine = obs(9000);
($r, $m) = post('/limit/Observation', $nine);
is($r && $r->status, 413,
    'Content-Length over client_max_body_size: nginx\'s 413');
is(record(audit($r)), '1 413 error -',
    'Content-Length over client_max_body_size: one record, nginx decided');

($r, $m) = post('/limit/Observation', $nine, chunked => 1000);
is($r && $r->status, 413,
    'chunked over client_max_body_size, at once: nginx\'s 413');
is(record(audit($r)), '1 413 error -',
    'chunked over client_max_body_size, at once: one record');
is(backend_saw($m), 0,
    'chunked over client_max_body_size, at once: no backend');

my $head = "POST /limit/Observation HTTP/1.1\r\n"
    . "Host: localhost\r\nConnection: close\r\n$CT\r\n"
    . "X-Marker: m=limit-slow\r\n"
    . "Transfer-Encoding: chunked\r\n\r\n";
$r = parse_response(http($head, body => chunked($nine, 1000), sleep => 0.3));
is($r && $r->status, 413,
    'chunked over client_max_body_size, after a pause: nginx\'s 413');
is(record(audit($r)), '1 413 error -',
    'chunked over client_max_body_size, after a pause: one record');
is(backend_saw('m=limit-slow'), 0,
    'chunked over client_max_body_size, after a pause: no backend');

$r = parse_response(http_req(method => 'POST', uri => '/fhir/Observation',
    headers => [$CT, 'Transfer-Encoding: chunked'],
    body => "zz\r\nbroken\r\n0\r\n\r\n"));
is($r && $r->status, 400, 'a broken chunk: nginx\'s 400');
is(record(audit($r)), '1 400 error -', 'a broken chunk: one record');

# a client that stops sending: client_body_timeout, 408, no response

sub partial {
    my ($path, $m, $close) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->port(8080), Proto => 'tcp') or die "connect: $!";
    print $s "POST $path HTTP/1.1\r\nHost: localhost\r\n$CT\r\n"
        . "X-Marker: $m\r\n"
        . "Content-Length: 5000\r\n\r\n" . ('x' x 100);
    if ($close) {
        close $s;
        return;
    }
    local $/;
    my $got = <$s>;     # nginx closes it after client_body_timeout
    close $s;
}

partial('/slow/Observation', 'm=timeout', 0);
my @a = audit_by_path('/slow/Observation');
is(scalar @a, 1, 'a body that stops coming: exactly one audit record');
is($a[0] && $a[0]{http}{status}, 408,
    'a body that stops coming: the record has nginx\'s 408');
is(backend_saw('m=timeout'), 0, 'a body that stops coming: no backend');

partial('/gone/Observation', 'm=gone', 1);
@a = audit_by_path('/gone/Observation');
is(scalar @a, 1, 'a client that leaves mid-body: exactly one audit record');
is($a[0] && $a[0]{http}{status}, 400,
    'a client that leaves mid-body: the record has nginx\'s 400');
is(backend_saw('m=gone'), 0, 'a client that leaves mid-body: no backend');

###############################################################################
# JSON: by Content-Type, parsed once

for my $case (
    [ 'application/json', '{"a":1}', '[ok]' ],
    [ 'application/fhir+json', '{"a":1}', '[ok]' ],
    [ 'Application/FHIR+JSON; charset=utf-8', '{"a":1}', '[ok]' ],
    [ 'application/fhir+json ;fhirVersion=4.0', '{"a":1}', '[ok]' ],
    [ 'application/json-patch+json', '[{"op":"remove","path":"/a"}]',
      '[ok]' ],
    [ 'application/fhir+json', '{"a":1,"a":2}', '[error]' ],
    [ 'application/fhir+json', '{"a":', '[error]' ],
    [ 'application/fhir+json', '{"a":1} x', '[error]' ],
    [ 'application/fhir+json', "{\"a\":\"\\u0000\"}", '[error]' ],
    [ 'text/plain', '{"a":1}', '[]' ],
    [ 'application/jsonx', '{"a":1}', '[]' ],
    [ 'application/fhir+json xml', '{"a":1}', '[]' ],
    [ 'application/fhir+xml', '<Patient/>', '[]' ],
    [ 'application/x-www-form-urlencoded', 'patient=p1', '[]' ],
) {
    my ($ct, $body, $want) = @$case;
    my $r = post('/fhir/Observation', $body, ct => "Content-Type: $ct");
    is($r && $r->header('X-Body-Json'), $want,
        "Content-Type $ct, body " . (length $body ? $body : 'empty')
        . ": \$welby_body_json $want");
}

my $mb = obs(3000);
$r = post('/fhir/Observation', $mb, ct => 'Content-Type: application/json');
is(count_log(qr/welby: body read /, $r), 1,
    'a JSON body is read once for the whole pipeline');
is(got($r), want($mb),
    'a parsed JSON body still reaches the backend byte for byte');

# an empty body of a create: the classifier asks for a create's body,
# and an empty one is no JSON
$r = post('/fhir/Observation', '', ct => 'Content-Type: application/json');
is($r && $r->header('X-Body-Json'), '[error]',
    'an empty body of a create: $welby_body_json is error');

# no Content-Type: read (and bounded), not parsed
$r = parse_response(http_req(method => 'POST', uri => '/fhir/Observation',
    body => '{"a":1}'));
is($r && $r->header('X-Body-Json'), '[]',
    'no Content-Type: the body is not parsed');

###############################################################################
# the error log: nothing above is an error of the gateway's (nginx logs
# its own refusals of a body at error)

my $nginx_own = qr/client intended to send too large|client sent invalid/;
my @errors = grep { /^\S+ \S+ \[(?:error|crit|alert|emerg)\]/
        && !/$nginx_own/ }
    split /\n/, $t->read_file('error.log');
is(scalar @errors, 0, 'no [error] or worse in the error log')
    or diag(join "\n", @errors[0 .. ($#errors < 4 ? $#errors : 4)]);
