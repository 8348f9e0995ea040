#!/usr/bin/perl

# The gateway over real TLS (IO::Socket::SSL) and HTTP/2 (curl with ALPN):
# request ids, refusals and what reaches the backend do not depend on the
# protocol.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Welby::Nginx qw(http_req parse_response);

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

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;

        location / {
            welby on;
            add_header X-Decision $welby_decision always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            js_content echo.echo;
        }
    }
}
EOF

$t->run()->plan(17);

my $port = $t->port(8443);
my $HEX32 = qr/^[0-9a-f]{32}\z/;

# HTTP/1.1 over TLS 1.3 and 1.2

for my $v (qw(TLSv1_3 TLSv1_2)) {
    my $r = parse_response(http_req(uri => '/fhir/Patient/1', port => $port,
        ssl => 1, SSL_version => $v));
    my $id = $r && $r->header('X-Request-Id');
    ok($r && $r->status == 200 && $id && $id =~ $HEX32,
        "$v: allowed request answered 200 with a generated request id");
    is($r && $r->json && $r->json->{headers}{'x-request-id'}, $id,
        "$v: the backend received the same request id");
}

my $r = parse_response(http_req(method => 'PROPFIND', uri => '/fhir/',
    port => $port, ssl => 1));
is($r && $r->status, 405, 'TLS: PROPFIND refused with 405');
is($r && $r->json && $r->json->{resourceType}, 'OperationOutcome',
    'TLS: refusal body is an OperationOutcome');

# HTTP/2 with curl: ALPN h2, lowercased header fields

sub h2 {
    my (@args) = @_;
    my $out = `curl -sk --http2 -D - --max-time 10 @args 'https://localhost:$port/fhir/Patient/1' 2>&1`;
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    my @lines = split /\r\n/, $head // '';
    my $status = shift @lines // '';
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        push @{ $h{lc $k} }, $v;
    }
    my $json = eval { decode_json($body // '') };
    return ($status, \%h, $json);
}

my ($status, $h, $j) = h2();
like($status, qr{^HTTP/2 200}, 'HTTP/2: allowed request answered 200 over h2');
is(scalar @{ $h->{'x-request-id'} || [] }, 1,
    'HTTP/2: exactly one x-request-id in the response');
like($h->{'x-request-id'}[0] // '', $HEX32,
    'HTTP/2: the request id is generated');
is($j && $j->{headers}{'x-request-id'}, $h->{'x-request-id'}[0],
    'HTTP/2: the backend received the same request id');

($status, $h, $j) = h2("-H 'X-Request-Id: h2-client.1'");
ok(($h->{'x-request-id'}[0] // '') =~ $HEX32
    && ($j && $j->{headers}{'x-request-id'} // '') eq $h->{'x-request-id'}[0],
    'HTTP/2: a client\'s valid request id is replaced, for the backend too');

($status, $h, $j) = h2("-H 'X-Request-Id: bad/id'");
like($h->{'x-request-id'}[0] // '', $HEX32,
    'HTTP/2: an invalid client request id is replaced');
is($j && $j->{headers}{'x-request-id'}, $h->{'x-request-id'}[0],
    'HTTP/2: the backend never sees the invalid id');

($status, $h, $j) = h2('-X PROPFIND');
like($status, qr{^HTTP/2 405}, 'HTTP/2: PROPFIND refused with 405');
is($h->{'content-type'}[0], 'application/fhir+json',
    'HTTP/2: refusal is application/fhir+json');
is($j && $j->{id}, $h->{'x-request-id'}[0],
    'HTTP/2: refusal body carries the request id of the response header');
is($h->{'x-decision'}[0], 'deny', 'HTTP/2: $welby_decision is deny');
