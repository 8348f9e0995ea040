#!/usr/bin/perl

# The module loads, the configuration passes "nginx -t", and a "welby on"
# location proxies a plain GET to the echo backend.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_get parse_response);

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_token off;    # tokens: t/10-token.t

    server {
        listen 127.0.0.1:%%PORT_8080%%;

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

$t->plan(7);

my ($code, $out) = $t->test_config();
is($code, 0, 'nginx -t exits 0 with the module loaded') or diag($out);
like($out, qr/test is successful/, 'nginx -t reports the configuration ok');

$t->run();

my $r = parse_response(http_get('/fhir/Patient/1?_format=json'));

is($r && $r->status, 200, 'GET through a welby on location is proxied: 200');
like($r && $r->header('Content-Type'), qr{^application/json},
    'response comes from the echo backend');

my $echo = $r && $r->json;
is($echo && $echo->{uri}, '/fhir/Patient/1?_format=json',
    'backend received the request URI unchanged');
is($echo && $echo->{method}, 'GET', 'backend received a GET');
is($r && $r->header('X-Decision'), 'allow',
    '$welby_decision is "allow" for a plain GET');
