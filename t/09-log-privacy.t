#!/usr/bin/perl

# The error log of a server the gateway protects carries ids and codes,
# never query values (search parameters hold health data) or a Referer
# (it can hold a token): the module replaces nginx's error log context
# from the post-read phase on, for every request of a server with a
# "welby on" location.  That covers nginx's own refusals after it: 413
# (HTTP/1.1 and HTTP/2), limit_req, limit_conn, a bad chunked body, an
# unreachable upstream.  What nginx logs before the post-read phase (a bad
# request line, a URI or header line too long, an invalid Host) it logs
# at info with its own context, which no module can change: at notice
# none of it appears.  A server without welby keeps nginx's own context,
# which shows what the replacement is for.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::IP;
use Welby::Nginx qw(http http_req parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

system('openssl', 'req', '-x509', '-newkey', 'ec',
    '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    '-keyout', "$d/server.key", '-out', "$d/server.crt") == 0
    or die "openssl req failed";

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_token off;    # tokens: t/10-token.t

    limit_req_zone $server_name zone=one:1m rate=1r/m;
    limit_conn_zone $server_name zone=conns:1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name gw;
        error_log %%TESTDIR%%/info.log info;
        error_log %%TESTDIR%%/notice.log notice;

        welby_tls off;    # over plain HTTP here; TLS below
        client_max_body_size 1k;
        client_header_buffer_size 1k;
        large_client_header_buffers 2 1k;

        location /fhir/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby on;
            welby_mode detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # nothing listens on PORT_8082: nginx logs a connect() error
        location /down/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /limited/ {
            welby on;
            limit_req zone=one;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # a backend that never answers holds the one connection allowed
        location /conn/ {
            welby on;
            limit_conn conns 1;
            proxy_pass http://127.0.0.1:%%PORT_8084%%;
        }

        # welby off, but in a protected server: the private context too
        location /open/ {
            welby off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    # the same over TLS and HTTP/2
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        server_name gw-tls;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;
        error_log %%TESTDIR%%/tls.log info;

        client_max_body_size 1k;

        location /fhir/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # no welby anywhere: nginx's own context
    server {
        listen 127.0.0.1:%%PORT_8083%%;
        server_name plain;
        error_log %%TESTDIR%%/plain.log info;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            client_max_body_size 4m;
            js_content echo.echo;
        }
    }
}
EOF

# the backend that accepts and never answers, for limit_conn
my $silent = IO::Socket::IP->new(Listen => 5, LocalHost => '127.0.0.1',
    LocalPort => $t->port(8084), ReuseAddr => 1) or die "silent: $!";

$t->run()->plan(46);

my @SECRETS = qw(SECRET-NAME-1 SECRET-CODE-2 SECRET-BIRTH-3 SECRET-TOKEN-4
    HanakoSecret 1980-02-03 diagnosis=HIV SECRET-LIMIT-6 SECRET-CONN-7
    SECRET-CHUNK-8 SECRET-H2-9 SECRET-OPEN-10);

sub get {
    my (%o) = @_;
    return parse_response(http_req(%o));
}

sub log_lines {
    my ($marker, $file) = @_;
    return grep { /\Q$marker\E/ } split /\n/, $t->read_file($file // 'info.log');
}

sub no_secret {
    my ($file) = @_;
    my $log = $t->read_file($file);
    return join ' ', grep { index($log, $_) >= 0 } @SECRETS;
}

###############################################################################
# a refusal

my $r = get(method => 'PROPFIND', uri => '/fhir/Patient?name=SECRET-NAME-1');
my $id = $r->header('X-Request-Id');
my @l = log_lines("id:$id");
is(scalar @l, 1, 'refusal: one line for the request');
like($l[0] // '', qr/\[notice\] .*welby: refused id:\Q$id\E step:classify reason:method_not_allowed/,
    'refusal: the line, at notice, names the id, the step and the reason');
like($l[0] // '', qr{request: "PROPFIND /fhir/Patient\?\.\.\."},
    'refusal: the context shows the method and the path, not the query');

# a detection

$r = get(uri => '/detect/Patient%2F1?code=SECRET-CODE-2');
$id = $r->header('X-Request-Id');
@l = log_lines("id:$id");
like($l[0] // '', qr/\[warn\].*welby: detect id:\Q$id\E .*reason:request_malformed/,
    'detect: a warn line names the id and the reason');

# nginx's own error for a protected request: upstream down

$r = get(uri => '/down/Observation?birthdate=SECRET-BIRTH-3',
    headers => ['Referer: https://app.example/cb?access_token=SECRET-TOKEN-4']);
is($r->status, 502, 'upstream down: 502');
$id = $r->header('X-Request-Id');
@l = grep { /connect\(\) failed/ } log_lines("request_id: $id");
is(scalar @l, 1, 'upstream down: the connect() error carries the request id');
like($l[0] // '', qr/upstream: "127\.0\.0\.1:\d+"/,
    'upstream down: the upstream is named by address only');

###############################################################################
# nginx's refusals after post-read: the issue's 413

my $big = 'x' x (2 * 1024 * 1024);
my $referer = 'Referer: https://x/?diagnosis=HIV';

$r = get(method => 'POST',
    uri => '/fhir/Patient?name=HanakoSecret&birthdate=1980-02-03',
    headers => [$referer, 'Content-Type: application/fhir+json'],
    body => $big);
is($r && $r->status, 413, '413: refused by client_max_body_size');
$id = $r && $r->header('X-Request-Id') // '-';
like($id, qr/^[0-9a-f]{32}\z/, '413: the answer carries X-Request-Id');
@l = $t->wait_for_log(qr/too large body.*request_id: \Q$id\E/, 10, 'info.log');
is(scalar @l, 1, '413: the [error] line carries the request id');
like($l[0] // '', qr/\[error\].*request: "POST \/fhir\/Patient\?\.\.\."/,
    '413: the line shows the path, not the query');
ok(@l && $l[0] !~ qr/referrer/, '413: the line has no Referer');
is(scalar log_lines("request_id: $id", 'notice.log'), 1,
    '413: the same line at notice');

# HTTP/2, TLS

my $tls = $t->port(8443);
$t->write_file('big.json', $big);
my $h2 = `curl -sk --http2 -o /dev/null -D - --max-time 10 -X POST \\
    -H '$referer' -H 'Content-Type: application/fhir+json' \\
    --data-binary \@$d/big.json \\
    'https://localhost:$tls/fhir/Patient?name=HanakoSecret&code=SECRET-H2-9' 2>&1`;
like($h2, qr{^HTTP/2 413}m, 'HTTP/2 413: refused');
my ($h2id) = $h2 =~ /^x-request-id: ([0-9a-f]{32})\r?$/mi;
ok(defined $h2id, 'HTTP/2 413: the answer carries X-Request-Id')
    or diag($h2);
like($h2, qr/^strict-transport-security: max-age=31536000; includeSubDomains\r?$/mi,
    'HTTP/2 413: and HSTS');
$h2id //= '-';
@l = $t->wait_for_log(qr/too large body.*request_id: \Q$h2id\E/, 10, 'tls.log');
is(scalar @l, 1, 'HTTP/2 413: the [error] line carries the request id');
ok(@l && $l[0] !~ qr/referrer|\?name/, 'HTTP/2 413: no query, no Referer');

# limit_req

get(uri => '/limited/a');
$r = get(uri => '/limited/Patient?name=SECRET-LIMIT-6', headers => [$referer]);
is($r && $r->status, 503, 'limit_req: the second request is refused');
$id = $r && $r->header('X-Request-Id') // '-';
@l = $t->wait_for_log(qr/limiting requests.*request_id: \Q$id\E/, 10, 'info.log');
is(scalar @l, 1, 'limit_req: the [error] line carries the request id');
ok(@l && $l[0] !~ qr/referrer|\?name/, 'limit_req: no query, no Referer');

# limit_conn: one request held by the silent backend, then another

my $held = IO::Socket::IP->new(PeerHost => '127.0.0.1',
    PeerPort => $t->port(8080)) or die "held: $!";
print $held "GET /conn/held HTTP/1.1\r\nHost: gw\r\n\r\n";
my $in = IO::Select->new($silent)->can_read(10) ? $silent->accept : undef;
ok($in, 'limit_conn: the first request is held at the backend');
$r = get(uri => '/conn/Patient?name=SECRET-CONN-7', headers => [$referer]);
is($r && $r->status, 503, 'limit_conn: the second request is refused');
$id = $r && $r->header('X-Request-Id') // '-';
@l = $t->wait_for_log(qr/limiting connections.*request_id: \Q$id\E/, 10, 'info.log');
is(scalar @l, 1, 'limit_conn: the [error] line carries the request id');
ok(@l && $l[0] !~ qr/referrer|\?name/, 'limit_conn: no query, no Referer');
close $held;
close $in if $in;

# a bad chunked body, found while the proxy reads it

$r = parse_response(http("POST /fhir/Patient?name=SECRET-CHUNK-8 HTTP/1.1\r\n"
    . "Host: gw\r\n$referer\r\nTransfer-Encoding: chunked\r\n"
    . "Connection: close\r\n\r\nzz\r\n\r\n"));
is($r && $r->status, 400, 'bad chunked body: 400');
$id = $r && $r->header('X-Request-Id') // '-';
@l = $t->wait_for_log(qr/invalid chunked body.*request_id: \Q$id\E/, 10, 'info.log');
like($l[0] // '', qr/\[error\]/,
    'bad chunked body: the [error] line carries the request id');

# welby off in the protected server: private all the same

$r = get(uri => '/open/Observation?birthdate=SECRET-OPEN-10');
@l = $t->wait_for_log(qr/connect\(\) failed.*\/open\/Observation\?\.\.\./, 10, 'info.log');
is(scalar @l, 1,
    'welby off location of a protected server: the private context');

###############################################################################
# before post-read: nginx's own lines, at info, with its context

my $long = 'a' x 1100;
my %early = (
    'bad request line' => ["get /fhir/x?name=SECRET-EARLY-1 HTTP/1.1\r\n\r\n",
        qr/client sent invalid method/],
    'URI too long' => ["GET /fhir/x?name=SECRET-EARLY-2&$long HTTP/1.1\r\n"
        . "Host: gw\r\n\r\n", qr/client sent too long URI/],
    'header line too long' => ["GET /fhir/x?name=SECRET-EARLY-3 HTTP/1.1\r\n"
        . "Host: gw\r\nReferer: https://x/?early=SECRET-EARLY-3&$long\r\n\r\n",
        qr/client sent too long header line/],
    'invalid Host' => ["GET /fhir/x?name=SECRET-EARLY-4 HTTP/1.1\r\n"
        . "Host: a/b\r\n\r\n", qr/client sent invalid host header/],
);

for my $what (sort keys %early) {
    my ($req, $re) = @{ $early{$what} };
    my ($secret) = $req =~ /(SECRET-EARLY-\d)/;
    $r = parse_response(http($req));
    ok($r && $r->status =~ /^4/ && $r->header('X-Request-Id'),
        "$what: refused by nginx, with X-Request-Id");
    @l = $t->wait_for_log($re, 10, 'info.log');
    like($l[-1] // '', qr/\[info\]/,
        "$what: nginx logs it at info, before the module could act");
    is(scalar log_lines($secret, 'notice.log'), 0,
        "$what: nothing of it at notice");
}

###############################################################################
# what the logs at notice hold, and the control

is(no_secret('info.log'), '',
    'info.log: no query value or Referer but those of nginx\'s early lines');
is(no_secret('notice.log'), '', 'notice.log: no query value, no Referer');
is(no_secret('tls.log'), '', 'tls.log: no query value, no Referer');

get(uri => '/Observation?birthdate=SECRET-PLAIN-5', port => $t->port(8083));
like($t->read_file('plain.log'), qr/SECRET-PLAIN-5/,
    'a server without welby: nginx\'s own context logs the query (what the '
    . 'module avoids)');

# a decoded control character cannot forge a log line

$r = get(uri => '/fhir/a%0AFORGED-LINE%0Db?q=1');
my $j = $r->json;
is($r->status . ' ' . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} }
        // ''), '400 request_malformed',
    'encoded CR/LF in the path: refused by the module, request_malformed');
my @forged = grep { !/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[/ }
    split /\n/, $t->read_file('info.log');
is_deeply(\@forged, [], 'every error log line starts with a timestamp');
