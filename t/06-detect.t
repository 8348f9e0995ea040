#!/usr/bin/perl

# welby_mode detect: a refusal is not sent, the request proceeds to the
# backend, $welby_decision is "detect", $welby_reason holds the reason
# code and a [warn] "welby: detect" line with the reason is logged.

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

        welby on;
        welby_mode detect;
        add_header X-Decision $welby_decision always;
        add_header X-Reason $welby_reason always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /strict/ {
            welby_mode enforce;
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

$t->run()->plan(21);

sub warn_lines {
    my ($reason) = @_;
    return scalar grep { /\[warn\].*welby: detect.*\b\Q$reason\E\b/ }
        split /\n/, $t->read_file('error.log');
}

sub req { parse_response(http_req(@_)) }

###############################################################################
# method not allowed, detected

my $before = warn_lines('method_not_allowed');
my $r = req(method => 'PROPFIND', uri => '/fhir/Patient',
    headers => ['X-Request-Id: detect-405']);
my $j = $r && $r->json;

is($r && $r->status, 200, 'detect: PROPFIND is not refused');
is($j && $j->{method}, 'PROPFIND', 'detect: PROPFIND reaches the backend');
is($r && $r->header('X-Decision'), 'detect', 'detect: $welby_decision detect');
is($r && $r->header('X-Reason'), 'method_not_allowed',
    'detect: $welby_reason method_not_allowed');
my @ids = $r ? $r->header('X-Request-Id') : ();
ok(@ids == 1 && $ids[0] =~ /^[0-9a-f]{32}\z/,
    'detect: response carries the gateway\'s request id once')
    or diag(explain \@ids);
is_deeply($j && $j->{headers}{'x-request-id'}, $ids[0],
    'detect: backend gets the same request id once');
is(warn_lines('method_not_allowed') - $before, 1,
    'detect: one [warn] "welby: detect" line with method_not_allowed');

###############################################################################
# malformed path, detected

$before = warn_lines('request_malformed');
$r = req(uri => '/fhir/Patient%2F1', headers => ['X-Request-Id: detect-400']);
$j = $r && $r->json;

is($r && $r->status, 200, 'detect: encoded slash is not refused');
is($j && $j->{uri}, '/fhir/Patient%2F1',
    'detect: backend receives the path unchanged');
is($r && $r->header('X-Decision'), 'detect',
    'detect: $welby_decision detect for a malformed path');
is($r && $r->header('X-Reason'), 'request_malformed',
    'detect: $welby_reason request_malformed');
is(warn_lines('request_malformed') - $before, 1,
    'detect: one [warn] "welby: detect" line with request_malformed');

###############################################################################
# allowed request in detect mode

my $all_before = () = $t->read_file('error.log') =~ /welby: detect/g;
$r = req(uri => '/fhir/Patient');
my $all_after = () = $t->read_file('error.log') =~ /welby: detect/g;

is($r && $r->status, 200, 'detect: plain GET proxied');
is($r && $r->header('X-Decision'), 'allow',
    'detect: $welby_decision allow for a plain GET');
is($r && $r->header_count('X-Reason'), 0,
    'detect: no $welby_reason for a plain GET');
is($all_after - $all_before, 0,
    'detect: no "welby: detect" line for a plain GET');

###############################################################################
# welby_mode enforce in a location overrides detect from the server level

$r = req(method => 'PROPFIND', uri => '/strict/x');
$j = $r && $r->json;

is($r && $r->status, 405, 'enforce overrides inherited detect: 405');
is($r && $r->header('X-Decision'), 'deny',
    'enforce overrides inherited detect: $welby_decision deny');
is($j && $j->{resourceType}, 'OperationOutcome',
    'enforce overrides inherited detect: OperationOutcome body');

$r = req(uri => '/strict/a%5Cb');
is($r && $r->status, 400, 'enforce location: malformed path refused with 400');
is($r && $r->header('X-Reason'), 'request_malformed',
    'enforce location: $welby_reason request_malformed');
