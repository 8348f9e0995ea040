#!/usr/bin/perl

# `make run`'s demo, started by its own script on free ports: it serves the
# demo FHIR data over TLS and HTTP/2 through the module, with the shipped
# TLS profile (conf/welby-tls.conf) and HSTS, refuses what the module
# refuses, redirects plain HTTP with 308, and stops cleanly on Ctrl-C.
# Its /fhir/ resources need an access token of the demo issuer, whose keys
# conf/demo/run makes and conf/demo/mint-token signs with; its /admin/
# needs the client certificate of alice, from the demo staff CA.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);
use Welby::Nginx;

my $t = Welby::Nginx->new();
my %demo = $t->demo_start();
my ($dir, $https, $http, $backend, $up) =
    @demo{qw(dir https http backend up)};

plan(tests => 28);

ok($up, 'the demo listens on its HTTPS port')
    or diag($t->read_file('demo.out'));

my $ca = "$dir/ca.crt";
my $base = "https://localhost:$https";

sub curl {
    my ($args) = @_;
    return scalar `curl -s --max-time 10 --cacert $ca $args 2>&1`;
}

# the banner may come a moment after the port is open (slower under ASan)
my $out = '';
for (1 .. 100) {
    $out = $t->read_file('demo.out');
    last if $out =~ /mint-token/ && $out =~ /\n\s*curl .*\n.*\n/s;
    sleep 0.1;
}

like($out, qr{curl --cacert \S+ \Q$base\E/fhir/Patient/p1},
    'the demo prints ready-to-paste curl commands');
like($out, qr{Authorization: Bearer .*mint-token},
    'the printed commands mint their tokens with conf/demo/mint-token');
my $alice = "--cert $dir/staff/alice.crt --key $dir/staff/alice.key";
my $admin_with = qr{curl --cacert \S+ \Q$alice $base\E/admin/ };
my $admin_without =
    qr{curl --cacert \S+ -i \Q$base\E/admin/ .*client_cert_required};
like($out, qr{$admin_with.*\n.*$admin_without},
    'the printed commands call /admin/ with and without alice\'s certificate');

# the staff PKI: a CA with a CRL, alice's certificate (key 0600) from it
my $verify_cmd = "openssl verify -CAfile $dir/staff-ca.crt -crl_check "
    . "-CRLfile $dir/staff-ca.crl -purpose sslclient $dir/staff/alice.crt";
my $verify_alice = `$verify_cmd 2>&1`;
my $staff_ca = `openssl x509 -in $dir/staff-ca.crt -noout -subject`;
my $alice_mode = (stat "$dir/staff/alice.key")[2] // 0;
ok($verify_alice =~ /: OK$/m && ($alice_mode & 0777) == 0600
        && $staff_ca =~ /Welby Demo Staff CA/,
    'the demo made a staff CA with a CRL and alice\'s client certificate '
    . '(key 0600)') or diag($verify_alice, sprintf('%o', $alice_mode));

# the issuer keys: private halves 0600, the JWKS public only
my @mode = map { (stat "$dir/keys/$_.key")[2] } qw(rs256 es256 eddsa);
my $jwks = eval { decode_json($t->read_file('demo/keys/jwks.json')) };
my @algs = sort map { $_->{alg} } @{ $jwks && $jwks->{keys} || [] };
ok(@mode == 3 && !grep({ !defined || ($_ & 0777) != 0600 } @mode)
    && "@algs" eq 'ES256 EdDSA RS256'
    && !grep({ exists $_->{d} } @{ $jwks->{keys} }),
    'the demo made RS256, ES256 and EdDSA issuer keys: private PEMs 0600, '
    . 'jwks.json with public keys only') or diag(explain [\@mode, $jwks]);

# WELBY_DEMO_DIR (set above) tells mint-token where the keys are
my $mint = "$FindBin::Bin/../conf/demo/mint-token";
sub mint { my $tk = `$mint @_`; chomp $tk; return $tk }
my $tok = mint("--sub p1 --patient p1 --scope 'patient/*.read' "
    . "--amr pwd,otp --ttl 300 --alg ES256");
like($tok, qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'mint-token prints a JWS token');
my $auth = "-H 'Authorization: Bearer $tok'";

my $r = curl("-i $base/fhir/Patient/p1");
my ($body) = $r =~ /\r\n\r\n(.*)\z/s;
my $oo = eval { decode_json($body // '') };
ok($r =~ m{^HTTP/\S+ 401 }
    && $r =~ m{^www-authenticate: Bearer realm="welby"\r?$}mi
    && $oo && $oo->{issue}[0]{details}{coding}[0]{code} eq 'token_missing',
    'no token: 401 token_missing with a Bearer challenge') or diag($r);

my @got = map {
    my $tk = mint("--alg $_ --sub p1 --patient p1 --keys $dir/keys");
    curl("-o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $tk' "
        . "$base/fhir/Patient/p1");
} qw(RS256 ES256 EdDSA);
is("@got", '200 200 200',
    'tokens minted with the RS256, ES256 and EdDSA demo keys: 200');

$r = curl("-o /dev/null -w '%{http_code}' $base/fhir/metadata");
is($r, '200', '/fhir/metadata is public: 200 without a token');

my $p = eval { decode_json(curl("$auth $base/fhir/Patient/p1")) };
is($p && $p->{resourceType}, 'Patient',
    'a demo Patient is served over TLS, verified against the demo CA');

# HSTS: the module's default on every /fhir/ answer over HTTPS
my $HSTS = 'max-age=31536000; includeSubDomains';
my @hsts = map {
    my $r = curl("-i $_");
    my @h = $r =~ /^strict-transport-security: (.*?)\r?$/mgi;
    my ($st) = $r =~ m{^HTTP/\S+ (\d+)};
    ($st // '') . ' ' . join('|', @h);
} ("$auth $base/fhir/Patient/p1", "$base/fhir/Patient/p1",
   "$base/fhir/metadata");
is("@hsts", "200 $HSTS 401 $HSTS 200 $HSTS",
    'HSTS (one year, includeSubDomains) on /fhir/ answers, refusals too');

# /admin/: alice's client certificate, no token
$r = curl("-i $alice $base/admin/");
($body) = $r =~ /\r\n\r\n(.*)\z/s;
my $admin = eval { decode_json($body // '') };
ok($r =~ m{^HTTP/\S+ 200 } && $admin && $admin->{admin} eq 'ok',
    '/admin/ with alice\'s client certificate: 200 {"admin":"ok"}')
    or diag($r);

sub reason_of {
    my ($resp) = @_;
    my ($st) = $resp =~ m{^HTTP/\S+ (\d+)};
    my ($b) = $resp =~ /\r\n\r\n(.*)\z/s;
    my $j = eval { decode_json($b // '') };
    return ($st // '') . ' '
        . (($j && $j->{issue}[0]{details}{coding}[0]{code}) // '');
}

is(reason_of(curl("-i $base/admin/")), '403 client_cert_required',
    '/admin/ without a client certificate: 403 client_cert_required');

# the server's certificate is of the other demo CA: nginx's 495, answered
# by the module through conf/welby-tls.conf
is(reason_of(curl("-i --cert $dir/server.crt --key $dir/server.key "
        . "$base/admin/")), '403 client_cert_invalid',
    '/admin/ with a certificate of another CA: 403 client_cert_invalid');

my $h = curl("--http2 -sI $auth $base/fhir/Patient/p2");
like($h, qr{^HTTP/2 200}m, 'HTTP/2 is negotiated with ALPN');
like($h, qr{^x-request-id: [0-9a-f]{32}\r?$}mi,
    'the demo answers with a generated request id');

# a client's own id is not taken (no trusted proxy in the demo): the
# record keeps it apart, checked once the demo has stopped
$h = curl("-i $auth -H 'X-Request-Id: demo-1' $base/fhir/Condition/c1");
my ($demo_id) = $h =~ /^x-request-id: ([0-9a-f]{32})\r?$/mi;
$demo_id //= 'none';
isnt($demo_id, 'none', 'a client request id is replaced by the gateway\'s');

$r = curl("$auth -X PROPFIND $base/fhir/Patient/p1");
$oo = eval { decode_json($r) };
is($oo && $oo->{issue}[0]{details}{coding}[0]{code}, 'method_not_allowed',
    'the module refuses PROPFIND with an OperationOutcome');

is(reason_of(curl("-i $auth '$base/fhir/Patient%2Fp1'")),
    '400 request_malformed',
    'the module refuses an encoded slash: 400 request_malformed');

my $uri = '/fhir/Observation?patient=p1'
    . '&code=http%3A%2F%2Floinc.org%7C8867-4&_count=2';
$h = curl("-i 'http://localhost:$http$uri'");
like($h, qr{^HTTP/1.1 308 .*^Location: \Q$base$uri\E\r?$}ms,
    'plain HTTP answers 308 to the same path and query over HTTPS');
unlike($h, qr{^strict-transport-security:}mi,
    'no HSTS on the plain-HTTP redirect');

my $status = $t->demo_stop(%demo);
is($status, 0, 'Ctrl-C (SIGINT) stops the demo, exit status 0');

# (read_file gives '' for a missing file: the first check is what says
# this is the demo's log at all)
my $log = $t->read_file('demo/error.log');
like($log, qr/: start worker process \d+\n.*: signal 2 \(SIGINT\) received/ms,
    'the demo\'s error.log shows a worker started and the master stopped '
    . 'by SIGINT');
unlike($log, qr/\[(alert|crit|emerg)\]/,
    'the demo logged no alert, crit or emerg');

# stopped, the demo has written its whole audit trail
my @audit = -f "$dir/audit.log"
    ? grep { /^\{"schema":1,/ } split /\n/, $t->read_file('demo/audit.log')
    : ();
my $verify = @audit ? `$FindBin::Bin/../conf/audit-verify $dir/audit.log 2>&1`
    : '';
ok(@audit >= 10 && $? == 0, 'the demo wrote an audit trail whose chains '
    . 'verify') or diag($verify);
is(scalar(grep { /"id":"\Q$demo_id\E","client_request_id":"demo-1",/ }
        @audit), 1,
    'its record has the gateway\'s id and the client\'s apart');

my @reports = grep { -s } glob($t->testdir() . '/sanitizer/*');
is_deeply(\@reports, [], 'no sanitizer report from the demo');

