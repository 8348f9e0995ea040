#!/usr/bin/perl

# An audit file that cannot be written (/dev/full: every write fails with
# ENOSPC) loses nothing silently: the failure is logged at [alert] once,
# not once per record, requests are still served, and a second, healthy
# file gets every record.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

# every Debian system has it (udev, or the container runtime makes it):
# without it this file proves nothing, which is a failure, not a skip
BAIL_OUT('/dev/full is missing: the failing-write test needs it')
    unless -c '/dev/full';

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_token off;
    welby_audit_log /dev/full;
    welby_audit_log %%TESTDIR%%/audit.log;

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

$t->run()->plan(5);

my @st = map { parse_response(http_req(uri => "/Patient/p$_"))->status }
    1 .. 20;
is(scalar(grep { $_ == 200 } @st), 20,
    'requests are served while one audit file fails');

my @lines = split /\n/, $t->read_file('audit.log');
is(scalar @lines, 20, 'the healthy file has every record');

$t->stop();

my $log = $t->read_file('error.log');
my @alerts = $log =~ /\[alert\] .*welby: audit log "\/dev\/full" write failed/g;
is(scalar @alerts, 1, 'the failure is an [alert], once, not once per record');
like($log, qr/No space left on device/, 'naming the reason');
like($log, qr/\[alert\] .*"\/dev\/full": \d+ bytes of records not written/,
    'at exit, what could not be written is reported');

# the teardown check fails on [alert] lines: these ones are the point of
# this test, asserted above, and set aside so that any other still counts

$t->write_file('error.log', join "\n",
    grep { !/welby: audit log "\/dev\/full"/ } split /\n/, $log);
