#!/usr/bin/perl

# The error log of a protected request carries ids and codes, never query
# values (search parameters hold health data) or a Referer (it can hold a
# token): the module replaces nginx's error log context for the requests
# it handles.  A location with "welby off" keeps nginx's own context, which
# shows what the replacement is for.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);

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
        server_name gw;
        error_log %%TESTDIR%%/info.log info;

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

        location /open/ {
            welby off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
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

$t->run()->plan(14);

sub get {
    my (%o) = @_;
    return parse_response(http_req(%o));
}

sub log_lines {
    my ($marker) = @_;
    return grep { /\Q$marker\E/ } split /\n/, $t->read_file('info.log');
}

# a refusal

my $r = get(method => 'PROPFIND', uri => '/fhir/Patient?name=SECRET-NAME-1');
my $id = $r->header('X-Request-Id');
my @l = log_lines("id:$id");
is(scalar @l, 1, 'refusal: one line for the request');
like($l[0] // '', qr/\[notice\] .*welby: refused id:\Q$id\E step:classify reason:method_not_allowed/,
    'refusal: the line, at notice, names the id, the step and the reason');
like($l[0] // '', qr{request: "PROPFIND /fhir/Patient\?\.\.\."},
    'refusal: the context shows the method and the path, not the query');
unlike($t->read_file('info.log'), qr/SECRET-NAME-1/,
    'refusal: the query value is nowhere in the error log');

# a detection

$r = get(uri => '/detect/Patient%2F1?code=SECRET-CODE-2');
$id = $r->header('X-Request-Id');
@l = log_lines("id:$id");
like($l[0] // '', qr/\[warn\].*welby: detect id:\Q$id\E .*reason:request_malformed/,
    'detect: a warn line names the id and the reason');
unlike($t->read_file('info.log'), qr/SECRET-CODE-2/,
    'detect: the query value is nowhere in the error log');

# nginx's own error for a protected request: upstream down

$r = get(uri => '/down/Observation?birthdate=SECRET-BIRTH-3',
    headers => ['Referer: https://app.example/cb?access_token=SECRET-TOKEN-4']);
is($r->status, 502, 'upstream down: 502');
$id = $r->header('X-Request-Id');
@l = grep { /connect\(\) failed/ } log_lines("request_id: $id");
is(scalar @l, 1, 'upstream down: the connect() error carries the request id');
like($l[0] // '', qr/upstream: "127\.0\.0\.1:\d+"/,
    'upstream down: the upstream is named by address only');
my $log = $t->read_file('info.log');
unlike($log, qr/SECRET-BIRTH-3/, 'upstream down: no query value in the log');
unlike($log, qr/SECRET-TOKEN-4/, 'upstream down: no Referer in the log');

# control: outside the gateway nginx logs the whole request line

get(uri => '/open/Observation?birthdate=SECRET-OPEN-5');
like($t->read_file('info.log'), qr/SECRET-OPEN-5/,
    'welby off: nginx\'s own context logs the query (what the module avoids)');

# a decoded control character cannot forge a log line

$r = get(uri => '/fhir/a%0AFORGED-LINE%0Db?q=1');
my $j = $r->json;
is($r->status . ' ' . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} }
        // ''), '400 request_malformed',
    'encoded CR/LF in the path: refused by the module, request_malformed');
my @forged = grep { !/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[/ }
    split /\n/, $t->read_file('info.log');
is_deeply(\@forged, [], 'every error log line starts with a timestamp');
