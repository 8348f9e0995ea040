#!/usr/bin/perl

# `make run`'s demo, started by its own script on free ports: it serves the
# demo FHIR data over TLS and HTTP/2 through the module, refuses what the
# module refuses, redirects plain HTTP with 308, and stops cleanly on Ctrl-C.

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
my $dir = $t->testdir() . '/demo';
my ($https, $http, $backend) = map { $t->port($_) } (8443, 8080, 8090);

$ENV{WELBY_DEMO_DIR} = $dir;
$ENV{WELBY_DEMO_HTTPS_PORT} = $https;
$ENV{WELBY_DEMO_HTTP_PORT} = $http;
$ENV{WELBY_DEMO_BACKEND_PORT} = $backend;

my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    my %env = $t->nginx_env();
    @ENV{keys %env} = values %env;
    open STDOUT, '>', $t->testdir() . '/demo.out' or die;
    open STDERR, '>&', \*STDOUT or die;
    exec("$FindBin::Bin/../conf/demo/run") or die "exec: $!";
}

my $up = 0;
for (1 .. 100) {
    last if waitpid($pid, WNOHANG) != 0;
    $up = IO::Socket::IP->new(PeerAddr => "127.0.0.1:$https") and last;
    sleep 0.1;
}

plan(tests => 12);

ok($up, 'the demo listens on its HTTPS port')
    or diag($t->read_file('demo.out'));

my $ca = "$dir/ca.crt";
my $base = "https://localhost:$https";

sub curl {
    my ($args) = @_;
    return scalar `curl -s --max-time 10 --cacert $ca $args 2>&1`;
}

my $out = $t->read_file('demo.out');
like($out, qr{curl --cacert \S+ \Q$base\E/fhir/Patient/p1},
    'the demo prints ready-to-paste curl commands');

my $p = eval { decode_json(curl("$base/fhir/Patient/p1")) };
is($p && $p->{resourceType}, 'Patient',
    'a demo Patient is served over TLS, verified against the demo CA');

my $h = curl("--http2 -sI $base/fhir/Patient/p2");
like($h, qr{^HTTP/2 200}m, 'HTTP/2 is negotiated with ALPN');
like($h, qr{^x-request-id: [0-9a-f]{32}\r?$}mi,
    'the demo answers with a generated request id');

$h = curl("-i -H 'X-Request-Id: demo-1' $base/fhir/Condition/c1");
like($h, qr{^x-request-id: demo-1\r?$}mi,
    'a valid client request id travels through the demo');

my $r = curl("-X PROPFIND $base/fhir/Patient/p1");
my $oo = eval { decode_json($r) };
is($oo && $oo->{issue}[0]{details}{coding}[0]{code}, 'method_not_allowed',
    'the module refuses PROPFIND with an OperationOutcome');

$r = curl("-o /dev/null -w '%{http_code}' '$base/fhir/Patient%2Fp1'");
is($r, '400', 'the module refuses an encoded slash with 400');

$h = curl("-i http://localhost:$http/fhir/Patient/p1?x=1");
like($h, qr{^HTTP/1.1 308 .*^Location: \Q$base\E/fhir/Patient/p1\?x=1\r?$}ms,
    'plain HTTP answers 308 to the same path and query over HTTPS');

kill 'INT', $pid;
my $status;
for (1 .. 100) {
    if (waitpid($pid, WNOHANG) == $pid) {
        $status = $?;
        last;
    }
    sleep 0.1;
}
is($status, 0, 'Ctrl-C (SIGINT) stops the demo, exit status 0');

my $log = -f "$dir/error.log" ? $t->read_file('demo/error.log') : '';
unlike($log, qr/\[(alert|crit|emerg)\]/,
    'the demo logged no alert, crit or emerg');

my @reports = grep { -s } glob($t->testdir() . '/sanitizer/*');
is_deeply(\@reports, [], 'no sanitizer report from the demo');

kill 'KILL', $pid unless defined $status;
