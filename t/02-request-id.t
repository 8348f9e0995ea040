#!/usr/bin/perl

# Request id: a valid incoming X-Request-Id (FHIR id: 1-64 chars of
# [A-Za-z0-9.-]) is kept, anything else is replaced by 32 lowercase hex
# chars.  The backend receives exactly one X-Request-Id (the kept or
# generated one) and every response of a welby on location carries it
# exactly once, including error pages and when the upstream sets its own.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http http_req parse_response);

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
        add_header X-Decision $welby_decision always;
        add_header X-Var-Id $welby_request_id always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /upstream-id/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /static/ {
            root %%TESTDIR%%/html;
        }

        location /down/ {
            # nothing listens there: nginx answers 502
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    # echo backend
    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location / {
            js_content echo.echo;
        }

        location /upstream-id/ {
            add_header X-Request-Id from-upstream always;
            js_content echo.echo;
        }
    }
}
EOF

$t->run()->plan(51);

my $HEX32 = qr/^[0-9a-f]{32}\z/;

# GET with the given extra header lines; returns the parsed response, the
# list of X-Request-Id response header values and the backend's view of
# X-Request-Id (a string, an array ref if repeated, undef if absent)
sub get {
    my ($uri, @headers) = @_;
    my $r = parse_response(http_req(uri => $uri, headers => \@headers));
    my @ids = $r ? $r->header('X-Request-Id') : ();
    my $json = $r && $r->json;
    my $backend = $json ? $json->{headers}{'x-request-id'} : undef;
    return ($r, \@ids, $backend);
}

###############################################################################
# valid ids are kept

my $id64 = ('A' x 30) . ('z' x 30) . '0.-9';
die "test bug: id64 is not 64 chars\n" unless length $id64 == 64;

my @valid = (
    ['abc-123.XYZ', 'letters, digits, dot and dash'],
    ['a', '1 char'],
    [$id64, '64 chars'],
    ['0123456789abcdef0123456789abcdef', '32 hex chars'],
);

for my $v (@valid) {
    my ($id, $what) = @$v;
    my ($r, $ids, $backend) = get('/fhir/Patient', "X-Request-Id: $id");
    is_deeply($ids, [$id], "valid id ($what) kept: response has it once");
    is_deeply($backend, $id, "valid id ($what) kept: backend gets it once");
}

{
    my ($r, $ids, $backend) = get('/fhir/Patient', 'x-request-id: lower-name');
    is_deeply($ids, ['lower-name'],
        'header name is case-insensitive: lowercase x-request-id kept');
    is_deeply($backend, 'lower-name',
        'lowercase x-request-id: backend gets the id exactly once');
}

###############################################################################
# invalid ids are replaced by a generated one

my @invalid = (
    [['X-Request-Id: ' . $id64 . 'x'], '65 chars'],
    [['X-Request-Id: bad_id'], 'underscore'],
    [['X-Request-Id: a/b'], 'slash'],
    [['X-Request-Id: a b'], 'space'],
    [['X-Request-Id: a"b'], 'double quote'],
    [['X-Request-Id: a<b'], 'less-than'],
    [["X-Request-Id: caf\xc3\xa9"], 'non-ASCII'],
    [['X-Request-Id: '], 'empty value'],
    [['X-Request-Id: first-id', 'X-Request-Id: second-id'],
        'header repeated'],
    [['X-Request-Id: first-id', 'x-request-id: first-id'],
        'header repeated with the same value, different case'],
);

for my $v (@invalid) {
    my ($hdrs, $what) = @$v;
    my ($r, $ids, $backend) = get('/fhir/Patient', @$hdrs);
    ok(@$ids == 1 && $ids->[0] =~ $HEX32,
        "invalid id ($what): response has one generated 32-hex id")
        or diag(explain $ids);
    is_deeply($backend, $ids->[0],
        "invalid id ($what): backend gets exactly the generated id");
}

###############################################################################
# no incoming id

my ($r, $ids, $backend) = get('/fhir/Patient');
ok(@$ids == 1 && $ids->[0] =~ $HEX32,
    'no incoming id: response has one generated 32-hex id');
is_deeply($backend, $ids->[0], 'no incoming id: backend gets the same id');
is($r && $r->header('X-Var-Id'), $ids->[0],
    '$welby_request_id equals the X-Request-Id response header');
is($r && $r->header('X-Decision'), 'allow', 'plain GET is allowed');

my (undef, $ids2) = get('/fhir/Patient');
ok(@$ids2 == 1 && $ids2->[0] =~ $HEX32 && $ids2->[0] ne $ids->[0],
    'two requests without an id get different generated ids');

###############################################################################
# the upstream's own X-Request-Id response header is replaced

($r, $ids, $backend) = get('/upstream-id/x', 'X-Request-Id: client-id-1');
is($r && $r->status, 200, 'upstream setting X-Request-Id: 200');
is_deeply($ids, ['client-id-1'],
    'upstream X-Request-Id replaced by the request id (kept id), once');

($r, $ids, $backend) = get('/upstream-id/x');
ok(@$ids == 1 && $ids->[0] =~ $HEX32,
    'upstream X-Request-Id replaced by the generated id, once')
    or diag(explain $ids);
is_deeply($backend, $ids->[0],
    'upstream X-Request-Id: backend got the same generated id');

###############################################################################
# error pages and refusals carry the id exactly once

($r, $ids) = get('/static/missing.html', 'X-Request-Id: err-404');
is($r && $r->status, 404, 'missing static file: 404');
is_deeply($ids, ['err-404'], 'nginx 404 error page carries the id once');

($r, $ids) = get('/static/missing.html', 'X-Request-Id: bad_404');
ok(@$ids == 1 && $ids->[0] =~ $HEX32,
    'nginx 404 error page carries a generated id once');

($r, $ids) = get('/down/x', 'X-Request-Id: err-502');
is($r && $r->status, 502, 'unreachable upstream: 502');
is_deeply($ids, ['err-502'], 'nginx 502 error page carries the id once');

$r = parse_response(http_req(method => 'PROPFIND', uri => '/fhir/Patient',
    headers => ['X-Request-Id: refused-1']));
is($r && $r->status, 405, 'PROPFIND refused with 405');
is_deeply([$r ? $r->header('X-Request-Id') : ()], ['refused-1'],
    'refusal carries the id once');

$r = parse_response(http_req(method => 'PROPFIND', uri => '/fhir/Patient',
    headers => ['X-Request-Id: bad_refused']));
my @rid = $r ? $r->header('X-Request-Id') : ();
ok(@rid == 1 && $rid[0] =~ $HEX32, 'refusal carries a generated id once');

$r = parse_response(http_req(method => 'HEAD', uri => '/fhir/Patient',
    headers => ['X-Request-Id: head-1']));
is($r && $r->status, 200, 'HEAD: 200');
is_deeply([$r ? $r->header('X-Request-Id') : ()], ['head-1'],
    'HEAD response carries the id once');
is($r && $r->raw_body, '', 'HEAD response has no body');

###############################################################################
# the rejected value never reaches the backend

($r, $ids, $backend) = get('/fhir/Patient', 'X-Request-Id: evil<id>');
my $json = $r ? $r->body : '';
ok(defined $json && length $json && index($json, 'evil') < 0,
    'rejected id value appears nowhere in what the backend received');
