#!/usr/bin/perl

# Classify step refusals: methods outside GET HEAD POST PUT PATCH DELETE
# OPTIONS get 405 method_not_allowed; control characters in the decoded
# path, or %2F, %25, backslash / %5C in the raw path, get 400
# request_malformed.  The refusal is a FHIR OperationOutcome with no
# internal detail, and the backend is never contacted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use Welby::Nginx qw(http http_req parse_response);

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_token off;    # tokens: t/10-token.t

    log_format backend '$request_method $request_uri';

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            add_header X-Decision $welby_decision always;
            add_header X-Reason $welby_reason always;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # echo backend, logging every request it receives
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/backend.log backend;

        location / {
            client_body_buffer_size 1m;
            js_content echo.echo;
        }
    }
}
EOF

$t->run()->plan(74);

my $HEX32 = qr/^[0-9a-f]{32}\z/;
my $ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

my @refused_markers;    # query markers of requests that must not reach
                        # the backend; checked at the end

sub req {
    my (%o) = @_;
    return parse_response(http_req(%o));
}

sub outcome {
    my ($id, $code, $reason, $text) = @_;
    return {
        resourceType => 'OperationOutcome',
        id => $id,
        issue => [{
            severity => 'error',
            code => $code,
            details => {
                coding => [{ system => 'urn:welby:reason', code => $reason }],
                text => $text,
            },
            diagnostics => "request-id $id",
        }],
    };
}

sub no_internal_detail {
    my ($body) = @_;
    return defined $body && length $body
        && $body !~ /nginx/i
        && $body !~ m{/(?:usr|etc|var|tmp|work|home|build)/}
        && $body !~ /\b\d+\.\d+\.\d+\b/
        && $body !~ /\.(?:c|h|so|conf)\b/;
}

###############################################################################
# full check of one 405 and one 400 refusal

for my $case (
    ['PROPFIND', '/fhir/Patient?m=full405', 405, 'method_not_allowed',
        'not-supported', 'full-405'],
    ['GET', '/fhir/Patient%2F1?m=full400', 400, 'request_malformed',
        'invalid', 'full-400'],
) {
    my ($method, $uri, $status, $reason, $code, $id) = @$case;
    my $what = "$method $uri";
    push @refused_markers, $uri =~ /\?(.*)/;

    my $r = req(method => $method, uri => $uri,
        headers => ["X-Request-Id: $id"]);

    is($r && $r->status, $status, "$what: status $status");
    is($r && $r->header('Content-Type'), 'application/fhir+json',
        "$what: Content-Type application/fhir+json");
    is($r && $r->header('Cache-Control'), 'no-store',
        "$what: Cache-Control no-store");
    # a client's own id is not the record's: the gateway's replaces it
    my @ids = $r ? $r->header('X-Request-Id') : ();
    ok(@ids == 1 && $ids[0] =~ $HEX32,
        "$what: X-Request-Id once, the gateway's, not the client's $id")
        or diag(explain \@ids);
    $id = $ids[0] // '-';
    is($r && $r->header('X-Decision'), 'deny', "$what: \$welby_decision deny");
    is($r && $r->header('X-Reason'), $reason, "$what: \$welby_reason $reason");

    my $json = $r && $r->json;
    my $text = $json && eval { $json->{issue}[0]{details}{text} };
    ok(defined $text && !ref $text && length $text,
        "$what: OperationOutcome has a details text");
    is_deeply($json, outcome($id, $code, $reason, $text),
        "$what: body is the expected OperationOutcome")
        or diag($r && $r->body);
    ok(no_internal_detail($r && $r->body),
        "$what: body has no internal detail") or diag($r && $r->body);

    if ($status == 405) {
        is($r && $r->header('Allow'), $ALLOW, "$what: Allow header");
    } else {
        is($r && $r->header_count('Allow'), 0, "$what: no Allow header");
    }
}

# a generated id is used in the body as well

my $r = req(method => 'MKCOL', uri => '/fhir/x?m=genid',
    headers => ['X-Request-Id: bad_id']);
push @refused_markers, 'm=genid';
my ($rid) = $r ? $r->header('X-Request-Id') : ();
ok(defined $rid && $rid =~ $HEX32, 'refusal with invalid id: generated id');
my $json = $r && $r->json;
ok($json && defined $rid && $json->{id} eq $rid
    && $json->{issue}[0]{diagnostics} eq "request-id $rid",
    'refusal with invalid id: body id and diagnostics use the generated id');

###############################################################################
# methods

for my $m (qw(PROPFIND MKCOL LOCK UNLOCK COPY MOVE PROPPATCH FOO)) {
    my $marker = "m=method-$m";
    push @refused_markers, $marker;
    my $r = req(method => $m, uri => "/fhir/Patient?$marker");
    my $j = $r && $r->json;
    ok($r && $r->status == 405
        && ($r->header('X-Reason') // '') eq 'method_not_allowed'
        && $j && eval { $j->{issue}[0]{details}{coding}[0]{code} }
            eq 'method_not_allowed',
        "method $m refused: 405 method_not_allowed")
        or diag($r ? $r->raw : 'no response');
}

for my $m (qw(GET HEAD POST PUT PATCH DELETE OPTIONS)) {
    my $r = req(method => $m, uri => "/fhir/Patient?m=allowed-$m",
        body => ($m =~ /^(?:POST|PUT|PATCH)$/ ? '{}' : undef));
    ok($r && $r->status == 200
        && ($r->header('X-Decision') // '') eq 'allow'
        && !$r->header_count('X-Reason'),
        "method $m allowed: 200 from the backend, decision allow, no reason")
        or diag($r ? $r->head : 'no response');
}

###############################################################################
# malformed paths

my @malformed = (
    ['/fhir/Patient%2F1', 'encoded slash %2F'],
    ['/fhir/Patient%2f1', 'encoded slash %2f'],
    ['/fhir/%2541', 'double encoding %25'],
    ['/fhir/a%25', 'encoded percent at the end'],
    ['/fhir/a%5Cb', 'encoded backslash %5C'],
    ['/fhir/a%5cb', 'encoded backslash %5c'],
    ['/fhir/a\\b', 'raw backslash'],
    ['/fhir/a%09b', 'encoded tab'],
    ['/fhir/a%0Ab', 'encoded LF'],
    ['/fhir/a%0Db', 'encoded CR'],
    ['/fhir/a%01b', 'encoded 0x01'],
    ['/fhir/a%1Fb', 'encoded 0x1F'],
    ['/fhir/a%7Fb', 'encoded DEL 0x7F'],
    ['/fhir//Patient', 'an empty segment'],
    ['/fhir/./Patient', 'a . segment'],
    ['/fhir/x/../Patient', 'a .. segment'],
    ['/fhir/Patient/..', 'a trailing .. segment'],
    ['/fhir/x/%2e%2e/Patient', 'encoded dots %2e%2e'],
    ['/fhir/x/%2E%2E/Patient', 'encoded dots %2E%2E'],
);

my $n = 0;
for my $case (@malformed) {
    my ($path, $what) = @$case;
    my $marker = 'm=malformed-' . $n++;
    push @refused_markers, $marker;
    my $r = req(uri => "$path?$marker");
    my $j = $r && $r->json;
    ok($r && $r->status == 400
        && ($r->header('X-Reason') // '') eq 'request_malformed'
        && $j && eval { $j->{issue}[0]{details}{coding}[0]{code} }
            eq 'request_malformed',
        "path with $what refused: 400 request_malformed")
        or diag($r ? $r->raw : 'no response');
}

my @fine = (
    ['/fhir/Patient?x=a%2Fb', 'encoded slash in the query'],
    ['/fhir/Patient?x=%25&y=%5C&z=a\\b', '%25, %5C and backslash in the query'],
    ['/fhir/Patient?x=%09%0A%7F', 'control characters in the query'],
    ['/fhir/a%20b', 'encoded space in the path'],
    ['/fhir/caf%C3%A9', 'encoded UTF-8 in the path'],
    ['/fhir/a%2Cb', 'encoded comma in the path'],
    ['/fhir/Patient/1/_history/2', 'a FHIR history path'],
);

for my $case (@fine) {
    my ($uri, $what) = @$case;
    my $r = req(uri => $uri);
    my $j = $r && $r->json;
    ok($r && $r->status == 200 && $j && $j->{uri} eq $uri,
        "$what: allowed and proxied unchanged")
        or diag($r ? $r->raw : 'no response');
}

###############################################################################
# HEAD refusal: headers, no body

$r = req(method => 'HEAD', uri => '/fhir/Patient%2F1?m=head400',
    headers => ['X-Request-Id: head-400']);
push @refused_markers, 'm=head400';
is($r && $r->status, 400, 'HEAD refusal: 400');
is($r && $r->header('Content-Type'), 'application/fhir+json',
    'HEAD refusal: Content-Type application/fhir+json');
is($r && $r->header('Cache-Control'), 'no-store',
    'HEAD refusal: Cache-Control no-store');
my @head_ids = $r ? $r->header('X-Request-Id') : ();
ok(@head_ids == 1 && $head_ids[0] =~ $HEX32,
    'HEAD refusal: X-Request-Id once, the gateway\'s')
    or diag(explain \@head_ids);
is($r && $r->raw_body, '', 'HEAD refusal: no body');

###############################################################################
# a refused request with a body on a keep-alive connection: the body is
# discarded and the next pipelined request is served normally

my $smuggled = "GET /smuggled HTTP/1.0\r\n\r\n";
my $raw = http(
    "PROPFIND /fhir/Patient?m=pipelined HTTP/1.1\r\n"
    . "Host: localhost\r\n"
    . "Content-Length: " . length($smuggled) . "\r\n"
    . "\r\n"
    . $smuggled
    . "GET /fhir/Patient?m=after-refusal HTTP/1.1\r\n"
    . "Host: localhost\r\n"
    . "Connection: close\r\n"
    . "\r\n"
);
push @refused_markers, 'm=pipelined';
# split the pipelined responses using Content-Length
my @statuses;
my $rest = $raw // '';
while (my $p = parse_response($rest)) {
    push @statuses, $p->status;
    my $len = $p->header('Content-Length') // last;
    $rest = substr($rest, length($p->head) + 4 + $len);
}
is("@statuses", '405 200',
    'refused request with a body: body discarded, next request served');
ok(defined $raw && $raw !~ /smuggled/,
    'refused request body is not interpreted as a request');

###############################################################################
# the backend never saw a refused request: send a control request, wait
# until the backend has logged it, then look for the refused markers

$r = req(uri => '/fhir/Patient?m=control');
is($r && $r->status, 200, 'control request proxied');

my $log = '';
for (1 .. 50) {
    $log = $t->read_file('backend.log');
    last if $log =~ /m=control/;
    sleep 0.1;
}
like($log, qr/m=control/, 'backend log records proxied requests');
like($log, qr/m=allowed-GET/, 'backend log records allowed requests');

my @seen = grep { $log =~ /\Q$_\E(?:&|\s|$)/m } @refused_markers;
is_deeply(\@seen, [], 'backend was not contacted for any refused request');
