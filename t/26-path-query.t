#!/usr/bin/perl

# Paths and queries a backend reads differently from a byte-for-byte
# check: a ';' in any path segment (servlet containers cut ";..." off a
# segment, so "..;" is a dot segment to Tomcat and Jetty), raw or encoded,
# in every location of a protected server, public ones included; an
# access_token query parameter however its name is spelled (encoded,
# another case, PHP's '.', '+' and '[]'); query names in the audit record
# as the backend decodes them.  And the refusal lines at notice, so an
# error log that shows them need not be at info, where nginx itself
# writes request headers, tokens included.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);
use JSON::PP ();

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name gw;
        welby on;
        error_log %%TESTDIR%%/notice.log notice;
        error_log %%TESTDIR%%/info.log info;
        add_header X-Reason $welby_reason always;

        location /fhir/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /fhir/.well-known/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby_mode detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run();

my $tok = jwt(key => $key, set => {});
my $other = jwt(key => $key, set => { sub => 'someone-else' });
my $n = 0;

sub get {
    my ($uri, @h) = @_;
    return parse_response(http_req(uri => $uri,
        headers => [@h, 'X-Request-Id: pq-' . ++$n]));
}

sub result {
    my ($r) = @_;
    return 'no response' unless $r;
    my $reason = $r->header('X-Reason') // '';
    return $r->status . ($reason ne '' ? " $reason" : '');
}

my @auth = ("Authorization: Bearer $tok");

###############################################################################
# ';' in the path

# [what, uri, headers, expected "status reason"]
my @paths = (
    ['public: a well-known document (control)',
        '/fhir/.well-known/smart-configuration', [], '200'],
    ['public: "..;" climbing out of the public location',
        '/fhir/.well-known/..;/Patient/p1', [], '400 request_malformed'],
    ['public: "..%3B", encoded',
        '/fhir/.well-known/..%3B/Patient/p1', [], '400 request_malformed'],
    ['public: "..%3b", encoded in lower case',
        '/fhir/.well-known/..%3b/Patient/p1', [], '400 request_malformed'],
    ['public: "%2e%2e;", dots encoded',
        '/fhir/.well-known/%2e%2e;/Patient/p1', [], '400 request_malformed'],
    ['protected: a read with a token (control)',
        '/fhir/Patient/p1', \@auth, '200'],
    ['protected: a path parameter in a segment',
        '/fhir/Patient;jsessionid=1/p1', \@auth, '400 request_malformed'],
    ['protected: a trailing ";"',
        '/fhir/Patient/p1;', \@auth, '400 request_malformed'],
    ['protected: ";" in the query is not the path (control)',
        '/fhir/Patient?name=a;b', \@auth, '200'],
    ['detect: a ";" segment is reported and passed on',
        '/detect/..;/Patient/p1', \@auth, '200 request_malformed'],
);

###############################################################################
# access_token in the query, however spelled

my @queries = (
    ['a Bearer token and an unrelated query (control)',
        '/fhir/Patient?name=x', \@auth, '200'],
    ['a Bearer token and access%5Ftoken',
        "/fhir/Patient?access%5Ftoken=$other", \@auth,
        '400 token_ambiguous'],
    ['a Bearer token and %61ccess_token',
        "/fhir/Patient?%61ccess_token=$other", \@auth,
        '400 token_ambiguous'],
    ['a Bearer token and ACCESS_TOKEN',
        "/fhir/Patient?ACCESS_TOKEN=$other", \@auth, '400 token_ambiguous'],
    ['a Bearer token and access.token (PHP: access_token)',
        "/fhir/Patient?access.token=$other", \@auth, '400 token_ambiguous'],
    ['a Bearer token and access+token (PHP: access_token)',
        "/fhir/Patient?access+token=$other", \@auth, '400 token_ambiguous'],
    ['a Bearer token and access_token[]',
        "/fhir/Patient?access_token%5B%5D=$other", \@auth,
        '400 token_ambiguous'],
    ['a Bearer token and access_token after a ";"',
        "/fhir/Patient?a=1;access_token=$other", \@auth,
        '400 token_ambiguous'],
    ['a Bearer token and access_token without a value',
        '/fhir/Patient?access_token', \@auth, '400 token_ambiguous'],
    ['only an encoded access_token in the query',
        "/fhir/Patient?access_tok%65n=$tok", [], '400 token_in_query'],
    ['a Bearer token and access-token (a name no backend folds: control)',
        "/fhir/Patient?access-token=x", \@auth, '200'],
    ['a Bearer token and access_tokens (control)',
        "/fhir/Patient?access_tokens=x", \@auth, '200'],
    ['a Bearer token and access_token as a value (control)',
        "/fhir/Patient?_query=access_token", \@auth, '200'],
);

for my $row (@paths, @queries) {
    my ($what, $uri, $h, $expect) = @$row;
    is(result(get($uri, @$h)), $expect, "$what: $expect");
}

###############################################################################
# query names in the audit record, decoded

my $r = get('/fhir/Patient?na%6De=Yamada&birth%64ate=1970-01-01&name=x',
    @auth);
my $id = $r && $r->header('X-Request-Id');
my $rec;
$t->wait_for(sub {
    for (split /\n/, $t->read_file('audit.log')) {
        my $j = eval { JSON::PP->new->decode($_) } or next;
        $rec = $j if ($j->{id} // '') eq ($id // '-');
    }
    return $rec;
});
is(join(',', @{ $rec->{http}{query}{names} || [] }), 'name,birthdate',
    'audit: encoded names are recorded as the backend reads them, once');

###############################################################################
# the refusal lines at notice; what info adds

$r = get('/fhir/Patient/p1');
$id = $r && $r->header('X-Request-Id');
$t->wait_for_log(qr/welby: refused id:\Q$id\E /, 10, 'notice.log');
like($t->read_file('notice.log'),
    qr/\[notice\] .*welby: refused id:\Q$id\E step:token reason:token_missing/,
    'a refusal line is written at notice, so a notice log has it');

my $secret = jwt(key => $key, set => { sub => 'dup-header' });
my $raw = http("GET /fhir/Patient/p1 HTTP/1.1\r\nHost: gw\r\n"
    . "Connection: close\r\nAuthorization: Bearer $secret\r\n"
    . "Authorization: Bearer $secret\r\n\r\n");
is(parse_response($raw) && parse_response($raw)->status, 400,
    'two Authorization headers: nginx answers 400 itself');
$t->wait_for_log(qr/duplicate header line/, 10, 'info.log');
like($t->read_file('info.log'), qr/\Q$secret\E/,
    'at info nginx itself logs the duplicate header line, token and all '
    . '(what README warns of)');
unlike($t->read_file('notice.log'), qr/\Q$secret\E|duplicate header/,
    'at notice that line, and the token, are not written');

$t->done_testing();
