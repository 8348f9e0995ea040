#!/usr/bin/perl

# The syslog copy of the audit trail (welby_audit_syslog): RFC 5424 over
# UDP and over a unix datagram socket, received here and parsed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Socket::UNIX;
use IO::Select;
use JSON::XS ();
use Socket qw(SOCK_DGRAM);
use Time::HiRes ();
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $udp = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1',
    LocalPort => $t->port(8084)) or die "udp listener: $!";

my $tcp = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1',
    LocalPort => $t->port(8085), Listen => 5, ReuseAddr => 1)
    or die "tcp listener: $!";

my $unix = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => "$d/log.sock")
    or die "unix listener: $!";
chmod 0666, "$d/log.sock";      # workers run as an unprivileged user

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_token off;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_audit_syslog server=127.0.0.1:%%PORT_8084%% facility=local3
                       tag=gw pen=32473;
    welby_audit_syslog server=unix:%%TESTDIR%%/log.sock;
    welby_audit_syslog server=127.0.0.1:%%PORT_8085%% transport=tcp pen=32473;
    welby_audit_node gw-node;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run()->plan(17);

sub receive {
    my ($sock) = @_;
    return undef unless IO::Select->new($sock)->can_read(5);
    my $msg;
    $sock->recv($msg, 65536);
    return $msg;
}

my $ok = parse_response(http_req(uri => '/Patient/p1'));
my $id = $ok->header('X-Request-Id');

my $m = receive($udp) // '';
my ($pri, $ver, $ts, $host, $app, $procid, $msgid, $sd, $json) = $m =~
    /^<(\d+)>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) (\[.*?\](?:\[.*?\])*|-) (\{.*\})$/s;

is($pri, 19 * 8 + 6, 'UDP: PRI is local3 (19) * 8 + informational (6)');
is($ver, 1, 'UDP: RFC 5424 version 1');
like($ts // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    'UDP: an RFC 3339 UTC timestamp with milliseconds');
is("$host $app", 'gw-node gw', 'UDP: hostname is the node, app-name the tag');
like($sd // '', qr/^\[welby\@32473 .*id="\Q$id\E"/,
    'UDP: structured data under the configured PEN, with the request id');
my $rec = eval { JSON::XS->new->decode($json // '') } || {};
is($rec->{id}, $id, 'UDP: MSG is the JSON record of that request');

my ($file_line) = grep { /\Q$id\E/ } split /\n/, $t->read_file('audit.log');
my $file_rec = eval { JSON::XS->new->decode($file_line // '') } || {};
ok($rec->{chain} && $rec->{chain} eq ($file_rec->{chain} // ''),
    'UDP: it carries the chain value of the file record');

$m = receive($unix) // '';
like($m, qr/^<110>1 /, 'unix socket: default facility audit (13), '
    . 'informational: PRI 110');
like($m, qr/\Q$id\E/, 'unix socket: the same request');
like($m, qr/ - \{/, 'unix socket: no PEN, no structured data ("-")');

# a refusal, with a hostile path: one line, escaped

my $r = parse_response(http_req(uri => '/a%5D%22b', method => 'PROPFIND'));
$m = receive($udp) // '';
like($m, qr/reason="method_not_allowed"/,
    'a refusal: the reason in the structured data');
unlike($m, qr/\n/, 'one datagram, one line');

# TCP, RFC 6587 octet counting

sub frames {
    my ($conn, $want) = @_;
    my ($buf, @f) = ('');
    my $sel = IO::Select->new($conn);
    while (@f < $want && $sel->can_read(5)) {
        my $n = sysread($conn, $buf, 65536, length $buf);
        last unless $n;
        while ($buf =~ /^(\d+) /) {
            my ($len, $skip) = ($1, length($1) + 1);
            last if length($buf) < $skip + $len;
            push @f, substr($buf, $skip, $len);
            substr($buf, 0, $skip + $len) = '';
        }
    }
    return @f;
}

IO::Select->new($tcp)->can_read(5);
my $conn = $tcp->accept;
ok($conn, 'TCP: the worker connected to the collector');

my @f = frames($conn, 2);
is(scalar @f, 2, 'TCP: both records so far arrive as octet-counted frames');
like($f[0] // '', qr/^<\d+>1 .*\Q$id\E/, 'TCP: an RFC 5424 message per frame');

# the collector restarts: the worker reconnects, nothing waits on it

close $conn;
my $t0 = Time::HiRes::time();
my @ids = map { parse_response(http_req(uri => "/Patient/p$_"))
    ->header('X-Request-Id') } 1 .. 3;
ok(Time::HiRes::time() - $t0 < 2, 'requests are not held up by the '
    . 'lost collector');

my $conn2;
$conn2 = $tcp->accept if IO::Select->new($tcp)->can_read(5);
@f = $conn2 ? frames($conn2, 3) : ();
is(join(' ', map { /"id":"([0-9a-f]+)"/ ? $1 : '?' } @f),
    join(" ", @ids),
    'TCP: after a reconnect the records sent meanwhile arrive, in order');
