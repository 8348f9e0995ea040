#!/usr/bin/perl

# The per-request state survives internal redirects (error_page to a named
# location or to a URI, try_files fallback, index, rewrite ... last): the
# request id stays the same before and after the redirect, and the steps
# run once in each "welby on" location whose access phase the request
# reaches (a rewrite ... last leaves before its first location's access
# phase: once).  Re-running after redirects into stricter locations:
# t/34-redirect-rerun.t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_token off;    # tokens: t/10-token.t

    log_format first '$request_uri $http_x_request_id';

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        add_header X-Decision $welby_decision always;

        # upstream answers 404, error_page to a named location
        location /ep-named/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = @echo;
        }

        # upstream answers 404, error_page to a URI
        location /ep-uri/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /fallback/;
        }

        location /fallback/ {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        # no such file: try_files falls back to a named location
        location /tf/ {
            root %%TESTDIR%%/html;
            try_files $uri @echo;
        }

        # index: /idx/ is redirected to /idx/index.html
        location /idx/ {
            root %%TESTDIR%%/html;
            index index.html;
        }

        location = /idx/index.html {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /rw/ {
            rewrite ^/rw/(.*)$ /fallback/$1 last;
        }

        location @echo {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    # the same redirect behind a trusted proxy, whose ids are taken
    server {
        listen 127.0.0.1:%%PORT_8083%%;

        welby on;
        welby_trusted_proxy 127.0.0.1 request_id=on;

        location /tf/ {
            root %%TESTDIR%%/html;
            try_files $uri @echo;
        }

        location @echo {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    # first upstream: always 404, logs the X-Request-Id it received
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/first.log first;

        location / {
            return 404;
        }
    }

    # echo backend
    server {
        listen 127.0.0.1:%%PORT_8082%%;

        location / {
            js_content echo.echo;
        }
    }
}
EOF

$t->write_file('html/idx/index.html', "index\n");

$t->run()->plan(35);

my $HEX32 = qr/^[0-9a-f]{32}\z/;

sub pipeline_runs {
    my ($id) = @_;
    my @l = grep { /welby: pipeline run/ } split /\n/, $t->read_file('error.log');
    return scalar(@l) unless defined $id;
    return scalar grep { /\bid:\Q$id\E(?:\W|$)/ } @l;
}

# the X-Request-Id the first (404) upstream received for a marker
sub first_hop_id {
    my ($marker) = @_;
    for (1 .. 50) {
        my ($line) = grep { /\Q$marker\E/ } split /\n/, $t->read_file('first.log');
        return (split / /, $line)[1] if $line;
        sleep 0.1;
    }
    return undef;
}

# Sends a GET with an invalid X-Request-Id (so the id is generated) and
# checks: fallback reached, one generated id, backend saw it, decision
# allow, the pipeline ran $runs times (once per location) and logged that
# id.  6 assertions.
sub check {
    my ($what, $uri, $runs) = @_;

    my $before = pipeline_runs();
    my $r = parse_response(http_req(uri => $uri,
        headers => ['X-Request-Id: not_valid']));
    my $after = pipeline_runs();

    my $j = $r && $r->json;
    ok($r && $r->status == 200 && $j && $j->{uri},
        "$what: request reaches the echo backend after the redirect")
        or diag($r ? $r->raw : 'no response');

    my @ids = $r ? $r->header('X-Request-Id') : ();
    my $id = $ids[0];
    ok(@ids == 1 && $id =~ $HEX32, "$what: response has one generated id")
        or diag(explain \@ids);

    is_deeply($j && $j->{headers}{'x-request-id'}, $id,
        "$what: backend after the redirect got the same id");
    is($r && $r->header('X-Decision'), 'allow',
        "$what: \$welby_decision is allow after the redirect");
    is($after - $before, $runs,
        "$what: the pipeline ran in each location ($runs)");
    is(defined $id ? pipeline_runs($id) : -1, $runs,
        "$what: the pipeline debug lines carry the request id");

    return $id;
}

my $id = check('error_page to named location', '/ep-named/x?m=named', 2);
is(first_hop_id('m=named'), $id,
    'error_page to named location: first upstream got the same id');

$id = check('error_page to URI', '/ep-uri/x?m=uri', 2);
is(first_hop_id('m=uri'), $id,
    'error_page to URI: first upstream got the same id');

check('try_files fallback to named location', '/tf/missing', 2);
check('index', '/idx/', 2);
check('rewrite last', '/rw/x', 1);

# a trusted proxy's id is kept across the redirect

my $r = parse_response(http_req(uri => '/tf/missing', port => $t->port(8083),
    headers => ['X-Request-Id: keep-me-1']));
is_deeply([$r ? $r->header('X-Request-Id') : ()], ['keep-me-1'],
    'trusted proxy\'s id kept across try_files redirect');
is_deeply($r && $r->json && $r->json->{headers}{'x-request-id'}, 'keep-me-1',
    'trusted proxy\'s id: the backend after the redirect got it, once');
is(pipeline_runs('keep-me-1'), 2,
    'trusted proxy\'s id: the pipeline ran in both locations for that id');
