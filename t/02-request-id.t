#!/usr/bin/perl

# Request id: who may choose it.  An incoming X-Request-Id is the request's
# id only from a welby_trusted_proxy with request_id=on (at server level),
# the TCP peer checked before realip replaces it, and only when it is a
# request id (a FHIR id, 1-64 of [A-Za-z0-9.-], starting with a letter or
# a digit).  Any other client gets 32 lowercase hex chars of the
# gateway's; its own id, when valid, is kept in the audit record as
# client_request_id and reaches neither the backend nor the response.
# The backend receives exactly one X-Request-Id (the record's) and every
# response of a welby on location carries it exactly once, including
# error pages and when the upstream sets its own.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Welby::Nginx qw(http http_req parse_response);

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_token off;    # tokens: t/10-token.t
    welby_audit_log %%TESTDIR%%/audit.log;

    # clients from 127.0.0.1; 127.0.0.2 is a proxy, trusted for its ids
    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_trusted_proxy 127.0.0.2 request_id=on;
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

    # a trusted proxy whose ids are not taken (request_id=off, the default)
    server {
        listen 127.0.0.1:%%PORT_8083%%;

        welby on;
        welby_trusted_proxy 127.0.0.2;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # request_id=on in a location only: the server's word decides, since
    # the id is made before a location is chosen
    server {
        listen 127.0.0.1:%%PORT_8084%%;

        welby on;

        location / {
            welby_trusted_proxy 127.0.0.2 request_id=on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # realip: the trusted proxy is the TCP peer, never an X-Forwarded-For
    server {
        listen 127.0.0.1:%%PORT_8085%%;

        welby on;
        welby_trusted_proxy 127.0.0.2 request_id=on;
        set_real_ip_from 127.0.0.0/8;
        real_ip_header X-Forwarded-For;
        add_header X-Remote-Addr $remote_addr always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
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

$t->run()->plan(73);

my $HEX32 = qr/^[0-9a-f]{32}\z/;
my $PROXY = '127.0.0.2';

# GET with the given extra header lines; returns the parsed response, the
# list of X-Request-Id response header values and the backend's view of
# X-Request-Id (a string, an array ref if repeated, undef if absent).
# Options before the URI: local => address, port => port.
sub get {
    my %o = ref $_[0] eq 'HASH' ? %{ shift() } : ();
    my ($uri, @headers) = @_;
    my $r = parse_response(http_req(uri => $uri, headers => \@headers, %o));
    my @ids = $r ? $r->header('X-Request-Id') : ();
    my $json = $r && $r->json;
    my $backend = $json ? $json->{headers}{'x-request-id'} : undef;
    return ($r, \@ids, $backend);
}

# the audit record with this id, once it is written ({} if none in 10 s)
sub record {
    my ($id) = @_;
    my $rec;
    $t->wait_for_file('audit.log', sub {
        for (split /\n/, $_[0]) {
            my $j = eval { JSON::XS->new->decode($_) } or next;
            return $rec = $j if ($j->{id} // '') eq ($id // '-');
        }
        return 0;
    });
    return $rec // {};
}

###############################################################################
# a client's valid id is not taken: the gateway's replaces it, the record
# keeps the client's apart

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
    ok(@$ids == 1 && $ids->[0] =~ $HEX32 && $ids->[0] ne $id,
        "client id ($what) not taken: response has one generated id")
        or diag(explain $ids);
    is_deeply($backend, $ids->[0],
        "client id ($what) not taken: backend gets only the generated id");
    is(record($ids->[0])->{client_request_id}, $id,
        "client id ($what): the record keeps it as client_request_id");
}

{
    my ($r, $ids, $backend) = get('/fhir/Patient', 'x-request-id: lower-name');
    is(record($ids->[0])->{client_request_id}, 'lower-name',
        'header name is case-insensitive: lowercase x-request-id recorded');
}

# the issue's case: one id chosen by a client, twice

my (undef, $v1) = get('/fhir/Patient', 'X-Request-Id: victim-req-42');
my (undef, $v2) = get('/fhir/Patient', 'X-Request-Id: victim-req-42');
my ($a1, $a2) = (record($v1->[0]), record($v2->[0]));
ok(defined $a1->{id} && defined $a2->{id} && $a1->{id} ne $a2->{id}
    && $a1->{id} ne 'victim-req-42' && $a2->{id} ne 'victim-req-42',
    'the same client id twice: two records with two ids of the gateway\'s');
is(($a1->{client_request_id} // '') . ' ' . ($a2->{client_request_id} // ''),
    'victim-req-42 victim-req-42',
    'the same client id twice: both records name it as the client\'s');

###############################################################################
# invalid ids are replaced, and not recorded either

my @invalid = (
    [['X-Request-Id: ' . $id64 . 'x'], '65 chars'],
    [['X-Request-Id: bad_id'], 'underscore'],
    [['X-Request-Id: a/b'], 'slash'],
    [['X-Request-Id: a b'], 'space'],
    [['X-Request-Id: a"b'], 'double quote'],
    [['X-Request-Id: a<b'], 'less-than'],
    [["X-Request-Id: caf\xc3\xa9"], 'non-ASCII'],
    [['X-Request-Id: '], 'empty value'],
    [['X-Request-Id: ..'], 'dot dot'],
    [['X-Request-Id: .x'], 'a leading dot'],
    [['X-Request-Id: -x'], 'a leading dash'],
    [['X-Request-Id: first-id', 'X-Request-Id: second-id'],
        'header repeated'],
    [['X-Request-Id: first-id', 'x-request-id: first-id'],
        'header repeated with the same value, different case'],
);

for my $v (@invalid) {
    my ($hdrs, $what) = @$v;
    my ($r, $ids, $backend) = get('/fhir/Patient', @$hdrs);
    ok(@$ids == 1 && $ids->[0] =~ $HEX32 && $backend && $backend eq $ids->[0]
        && !exists record($ids->[0])->{client_request_id},
        "invalid id ($what): one generated id for the response and the "
        . 'backend, nothing recorded of the client\'s')
        or diag(explain [$ids, $backend]);
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
ok(!exists record($ids->[0])->{client_request_id},
    'no incoming id: the record has no client_request_id');

my (undef, $ids2) = get('/fhir/Patient');
ok(@$ids2 == 1 && $ids2->[0] =~ $HEX32 && $ids2->[0] ne $ids->[0],
    'two requests without an id get different generated ids');

###############################################################################
# a trusted proxy with request_id=on: its valid ids are the request's

for my $v (@valid) {
    my ($id, $what) = @$v;
    my ($r, $ids, $backend) = get({ local => $PROXY }, '/fhir/Patient',
        "X-Request-Id: $id");
    is_deeply($ids, [$id], "trusted proxy's id ($what): response has it once");
    is_deeply($backend, $id,
        "trusted proxy's id ($what): backend gets it once");
}

($r, $ids, $backend) = get({ local => $PROXY }, '/fhir/Patient',
    'x-request-id: proxy-lower');
is_deeply([@$ids, $backend], ['proxy-lower', 'proxy-lower'],
    'trusted proxy: a lowercase x-request-id is taken, once');
my $rec = record('proxy-lower');
ok(defined $rec->{id} && !exists $rec->{client_request_id},
    'trusted proxy: the record\'s id is the proxy\'s, nothing else kept');

for my $v (['..', 'dot dot'], ['bad_id', 'underscore']) {
    my ($id, $what) = @$v;
    ($r, $ids, $backend) = get({ local => $PROXY }, '/fhir/Patient',
        "X-Request-Id: $id");
    ok(@$ids == 1 && $ids->[0] =~ $HEX32 && ($backend // '') eq $ids->[0],
        "trusted proxy, invalid id ($what): replaced all the same");
}

($r, $ids, $backend) = get({ local => $PROXY }, '/fhir/Patient',
    'X-Request-Id: one-id', 'X-Request-Id: two-id');
ok(@$ids == 1 && $ids->[0] =~ $HEX32 && ($backend // '') eq $ids->[0],
    'trusted proxy, repeated header: replaced, the backend sees one id');

($r, $ids) = get({ local => $PROXY }, '/static/missing.html',
    'X-Request-Id: proxy-404');
is_deeply($ids, ['proxy-404'],
    'trusted proxy: nginx 404 error page carries its id once');

$r = parse_response(http_req(method => 'PROPFIND', uri => '/fhir/Patient',
    local => $PROXY, headers => ['X-Request-Id: proxy-405']));
is_deeply([$r ? $r->header('X-Request-Id') : ()], ['proxy-405'],
    'trusted proxy: a refusal carries its id once');
is($r && $r->json && $r->json->{id}, 'proxy-405',
    'trusted proxy: the OperationOutcome carries its id');

# the control: the same proxy address without request_id=on

($r, $ids, $backend) = get({ local => $PROXY, port => $t->port(8083) },
    '/fhir/Patient', 'X-Request-Id: not-taken-1');
ok(@$ids == 1 && $ids->[0] =~ $HEX32 && ($backend // '') eq $ids->[0],
    'trusted proxy without request_id=on: its id is not taken');
is(record($ids->[0])->{client_request_id}, 'not-taken-1',
    'trusted proxy without request_id=on: its id is recorded as the '
    . 'client\'s');

# request_id=on at location level only

($r, $ids, $backend) = get({ local => $PROXY, port => $t->port(8084) },
    '/fhir/Patient', 'X-Request-Id: loc-only-1');
ok(@$ids == 1 && $ids->[0] =~ $HEX32 && ($backend // '') eq $ids->[0],
    'request_id=on in a location only: the server\'s welby_trusted_proxy '
    . 'decides, the id is not taken');

# realip: the peer decides, not the address realip puts in its place

($r, $ids, $backend) = get({ port => $t->port(8085) }, '/fhir/Patient',
    "X-Forwarded-For: $PROXY", 'X-Request-Id: spoofed-1');
is($r && $r->header('X-Remote-Addr'), $PROXY,
    'realip: the client made itself 127.0.0.2 by X-Forwarded-For');
ok(@$ids == 1 && $ids->[0] =~ $HEX32 && ($backend // '') eq $ids->[0],
    'realip: its id is not taken all the same (the TCP peer is 127.0.0.1)');

($r, $ids, $backend) = get({ local => $PROXY, port => $t->port(8085) },
    '/fhir/Patient', 'X-Forwarded-For: 10.1.2.3', 'X-Request-Id: via-lb-1');
is($r && $r->header('X-Remote-Addr'), '10.1.2.3',
    'realip: behind the proxy, the client address is the forwarded one');
is_deeply([@$ids, $backend], ['via-lb-1', 'via-lb-1'],
    'realip: the proxy\'s id is taken, its peer being the trusted one');

###############################################################################
# the upstream's own X-Request-Id response header is replaced

($r, $ids, $backend) = get({ local => $PROXY }, '/upstream-id/x',
    'X-Request-Id: proxy-id-1');
is($r && $r->status, 200, 'upstream setting X-Request-Id: 200');
is_deeply($ids, ['proxy-id-1'],
    'upstream X-Request-Id replaced by the request id (taken id), once');

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
ok(@$ids == 1 && $ids->[0] =~ $HEX32,
    'nginx 404 error page carries a generated id once');

($r, $ids) = get('/down/x', 'X-Request-Id: err-502');
is($r && $r->status, 502, 'unreachable upstream: 502');
ok(@$ids == 1 && $ids->[0] =~ $HEX32,
    'nginx 502 error page carries a generated id once');

$r = parse_response(http_req(method => 'PROPFIND', uri => '/fhir/Patient',
    headers => ['X-Request-Id: refused-1']));
is($r && $r->status, 405, 'PROPFIND refused with 405');
my @rid = $r ? $r->header('X-Request-Id') : ();
ok(@rid == 1 && $rid[0] =~ $HEX32, 'refusal carries a generated id once');
is(record($rid[0])->{client_request_id}, 'refused-1',
    'refusal: the record keeps the client\'s id');

$r = parse_response(http_req(method => 'HEAD', uri => '/fhir/Patient',
    headers => ['X-Request-Id: head-1']));
is($r && $r->status, 200, 'HEAD: 200');
@rid = $r ? $r->header('X-Request-Id') : ();
ok(@rid == 1 && $rid[0] =~ $HEX32, 'HEAD response carries the id once');
is($r && $r->raw_body, '', 'HEAD response has no body');

###############################################################################
# neither a rejected value nor a client's valid one reaches the backend

($r, $ids, $backend) = get('/fhir/Patient', 'X-Request-Id: evil<id>');
my $json = $r ? $r->body : '';
ok(defined $json && length $json && index($json, 'evil') < 0,
    'rejected id value appears nowhere in what the backend received');

($r, $ids, $backend) = get('/fhir/Patient', 'X-Request-Id: chosen-by-client');
$json = $r ? $r->body : '';
ok(defined $json && length $json && index($json, 'chosen-by-client') < 0,
    'a client\'s valid id appears nowhere in what the backend received');
