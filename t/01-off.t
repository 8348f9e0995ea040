#!/usr/bin/perl

# "welby off" does nothing at all: the same raw request through a server
# without any welby directive and through a server with "welby on" at
# server level and "welby off" in the location gives byte-identical
# responses (apart from Date), and no X-Request-Id is added or changed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http parse_response);

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%

    # plain: no welby directive anywhere
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /static/ {
            root %%TESTDIR%%/html;
        }
    }

    # welby on at server level, off in the locations
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        server_name localhost;

        welby on;
        welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

        location / {
            welby off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /static/ {
            welby off;
            root %%TESTDIR%%/html;
        }

        # control: inherits "welby on" from the server level
        location /inherit/ {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    # echo backend
    server {
        listen 127.0.0.1:%%PORT_8082%%;

        location / {
            client_body_buffer_size 1m;
            js_content echo.echo;
        }
    }
}
EOF

$t->write_file('html/static/file.txt', "static content\n");

$t->run()->plan(16);

my $plain = $t->port(8080);
my $off   = $t->port(8081);

# Sends one raw request to both servers; returns both raw responses.
sub both {
    my ($req) = @_;
    return (http($req, port => $plain), http($req, port => $off));
}

sub no_date {
    my ($raw) = @_;
    return undef unless defined $raw;
    (my $s = $raw) =~ s/^Date: [^\r\n]*\r\n//mi;
    return $s;
}

my %requests = (
    'GET with an invalid X-Request-Id and odd headers' =>
        "GET /fhir/Patient/1?name=a%2Fb HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "X-Request-Id: bad_id with spaces/<script>\r\n"
        . "X-Odd: a\tb ;;, \"quoted\"\r\n"
        . "X-Dup: one\r\n"
        . "x-dup: two\r\n"
        . "\r\n",

    'GET with a repeated X-Request-Id' =>
        "GET /fhir/Observation HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "X-Request-Id: first-id\r\n"
        . "X-Request-Id: second-id\r\n"
        . "\r\n",

    'POST with a body and an empty X-Request-Id' =>
        "POST /fhir/Patient HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "X-Request-Id: \r\n"
        . "Content-Type: application/fhir+json\r\n"
        . "Content-Length: 33\r\n"
        . "\r\n"
        . '{"resourceType":"Patient","a":1}' . "\n",

    'PROPFIND (a method welby on would refuse)' =>
        "PROPFIND /fhir/Patient HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "\r\n",

    'encoded slash, double encoding and backslash in the path' =>
        "GET /fhir/Patient%2F1/%2541/a%5Cb/c\\d/e%09f HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "\r\n",

    'HEAD request' =>
        "HEAD /fhir/Patient/1 HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "\r\n",

    'static file' =>
        "GET /static/file.txt HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "\r\n",

    'nginx 404 error page' =>
        "GET /static/missing.txt HTTP/1.1\r\n"
        . "Host: localhost\r\n"
        . "Connection: close\r\n"
        . "\r\n",
);

for my $name (sort keys %requests) {
    my ($a, $b) = both($requests{$name});
    ok(defined $a && length $a && defined $b
        && no_date($a) eq no_date($b),
        "welby off: identical response for $name")
        or diag("plain:\n" . ($a // 'undef') . "\noff:\n" . ($b // 'undef'));
}

# the comparison above is meaningful only if welby on changes something

my $req = "GET /inherit/x HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\n\r\n";
my $on = parse_response(http($req, port => $off));
is($on && $on->header_count('X-Request-Id'), 1,
    'control: welby on inherited from server level adds X-Request-Id');

# explicit checks on the welby off server

my $r = parse_response(http($requests{'GET with an invalid X-Request-Id and odd headers'},
    port => $off));
is($r && $r->status, 200, 'welby off: request proxied with 200');
is($r && $r->header_count('X-Request-Id'), 0,
    'welby off: no X-Request-Id added to the response');
is($r && $r->json && $r->json->{headers}{'x-request-id'},
    'bad_id with spaces/<script>',
    'welby off: backend receives the invalid X-Request-Id unchanged');

$r = parse_response(http($requests{'GET with a repeated X-Request-Id'},
    port => $off));
is_deeply($r && $r->json && $r->json->{headers}{'x-request-id'},
    ['first-id', 'second-id'],
    'welby off: backend receives both repeated X-Request-Id headers');

$r = parse_response(http($requests{'PROPFIND (a method welby on would refuse)'},
    port => $off));
is($r && $r->json && $r->json->{method}, 'PROPFIND',
    'welby off: PROPFIND reaches the backend');

$r = parse_response(http($requests{'POST with a body and an empty X-Request-Id'},
    port => $off));
is($r && $r->json && $r->json->{body}, '{"resourceType":"Patient","a":1}' . "\n",
    'welby off: backend receives the request body unchanged');

$r = parse_response(http($requests{'nginx 404 error page'}, port => $off));
is($r && $r->header_count('X-Request-Id'), 0,
    'welby off: no X-Request-Id on an nginx error page');
