#!/usr/bin/perl

# The outcome, category and severity of audit records, one request per
# cell of README.md's table ("The audit trail"): allowed, allowed in
# detect mode, refused for an authentication reason or another one, an
# upstream error under each decision, and responses no step checked (a
# rewrite-phase return).  internal_error, which no request can provoke
# from outside, is a cell of t/unit/audit.c; alert records are
# t/16-audit-alerts.t's.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
my $other = gen_key('ES256', kid => 'k1');
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

        welby on;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /down/ {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /tls/ {
            welby_tls required;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby_mode detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect-tls/ {
            welby_mode detect;
            welby_tls required;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect-down/ {
            welby_mode detect;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /return200/ {
            return 200 "not checked\n";
        }

        location /return301/ {
            return 301 /elsewhere;
        }

        location /return503/ {
            return 503;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

my $set = { iss => 'https://issuer.test', aud => 'https://fhir.test',
    sub => 'nurse-7' };
my $tok = jwt(key => $key, set => $set);
my $forged = jwt(key => $other, set => $set);

# request, what its record must say: outcome/category/severity/reason/status
my @cells = (
    [ 'allowed', { uri => '/Patient/p1', token => $tok },
      'allow/operation/informational/-/200' ],
    [ 'allowed, the upstream down', { uri => '/down/p1', token => $tok },
      'error/event/error/-/502' ],
    [ 'refused, no token', { uri => '/Patient/p1' },
      'deny/authentication/warning/token_missing/401' ],
    [ 'refused, a bad signature', { uri => '/Patient/p1', token => $forged },
      'deny/authentication/warning/token_signature/401' ],
    [ 'refused, a method', { uri => '/Patient/p1', method => 'PROPFIND',
      token => $tok }, 'deny/event/warning/method_not_allowed/405' ],
    [ 'refused, a path', { uri => '/Patient/..%2Fp1', token => $tok },
      'deny/event/warning/request_malformed/400' ],
    [ 'refused, plain HTTP', { uri => '/tls/p1', token => $tok },
      'deny/event/warning/tls_required/403' ],
    [ 'detect, no token', { uri => '/detect/p1' },
      'allow/operation/notice/token_missing/200' ],
    [ 'detect, plain HTTP', { uri => '/detect-tls/p1', token => $tok },
      'allow/operation/notice/tls_required/200' ],
    [ 'detect, a method', { uri => '/detect/p1', method => 'PROPFIND',
      token => $tok }, 'allow/operation/notice/method_not_allowed/200' ],
    [ 'detect, no token, the upstream down', { uri => '/detect-down/p1' },
      'error/event/error/token_missing/502' ],
    [ 'not checked, return 200', { uri => '/return200/x' },
      'error/event/warning/-/200' ],
    [ 'not checked, return 301', { uri => '/return301/x' },
      'error/event/warning/-/301' ],
    [ 'not checked, return 503', { uri => '/return503/x' },
      'error/event/error/-/503' ],
);

$t->run()->plan(scalar @cells);

my $json = JSON::PP->new->utf8;
my $n = 0;

for my $cell (@cells) {
    my ($name, $req, $want) = @$cell;
    ++$n;
    my ($id) = http_req(uri => $req->{uri},
        method => $req->{method} // 'GET',
        headers => [
            $req->{token} ? ("Authorization: Bearer $req->{token}") : ()])
        =~ /^X-Request-Id: ([^\r\n]+)/mi;
    $id //= 'none';

    my $rec;
    $t->wait_for(sub {
        ($rec) = grep { ($_->{id} // '') eq $id }
            map { eval { $json->decode($_) } // {} }
            split /\n/, $t->read_file('audit.log');
        return $rec;
    });

    is(join('/', map { $_ // '-' } @{ $rec || {} }{qw(outcome category
        severity reason)}, ($rec || {})->{http}{status}), $want,
        "$name: $want");
}
