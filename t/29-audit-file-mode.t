#!/usr/bin/perl

# The mode of audit files, decided at configuration time: the module
# creates a missing file owner-only (0600), at start and before nginx
# reopens it (nginx itself would create it 0644); the mode of a file that
# exists is the operator's, said once by a [warn] at nginx -t and at
# start when group or others may read or write it, and never changed by a
# worker (no fchmod, no [alert] at each worker start).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_token off;
    welby_audit_log %%TESTDIR%%/new.log;
    welby_audit_log %%TESTDIR%%/shared.log;

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

# an audit file an operator gave a group of auditors on purpose
$t->write_file('shared.log', '');
chmod 0640, "$d/shared.log" or die "chmod: $!";

sub mode { return sprintf('%04o', (stat "$d/$_[0]")[2] & 07777) }

my $WARN = qr/\[warn\] .*welby_audit_log "\Q$d\E\/shared\.log" has mode 0640: its group or others can read or change the audit trail/;

$t->plan(9);

# (nginx writes a message of configuration time to its error log, and
# to stderr as "nginx: [warn] ...": the log's lines are counted)
my ($rc, $out) = $t->test_config();
my @warn = grep { /^\d{4}\/\d\d\/\d\d .*$WARN/ } split /\n/, $out;
ok($rc == 0 && @warn == 1,
    'nginx -t: passes, with one [warn] naming the file and its mode 0640')
    or diag "exit $rc: $out";
unlink "$d/new.log" or die "unlink: $!";     # nginx -t created it

$t->run();

is(mode('new.log'), '0600', 'a file the module creates at start is 0600');

my $n = 0;

# one request, once its record is in both files
sub req {
    ++$n;
    my ($id) = http_req(uri => "/Patient/p$n")
        =~ /^X-Request-Id: ([^\r\n]+)/mi;
    $id //= 'none';
    $t->wait_for(sub {
        !grep { $t->read_file($_) !~ /"id":"\Q$id\E"/ } 'new.log', 'shared.log'
    }) or diag("no record of $id in both files");
    return $id;
}

req();
is(mode('shared.log'), '0640',
    'an existing 0640 file keeps its mode once a worker has written to it');
my @start = grep { /$WARN/ } split /\n/, $t->read_file('error.log');
is(scalar @start, 1, 'starting nginx: that [warn], once');

# logrotate: the files renamed; shared.log made anew as "create 0640"
# does, new.log left to nginx to create

for my $f ('new.log', 'shared.log') {
    rename "$d/$f", "$d/$f.1" or die "rename $f: $!";
}
$t->write_file('shared.log', '');
chmod 0640, "$d/shared.log" or die "chmod: $!";
$t->reopen() or diag('no "reopening logs" from every process');

is(mode('new.log'), '0600',
    'a file created for the reopen is 0600 at once, before any record');
my $second = req();
is(mode('new.log'), '0600', 'and stays so once written');
is(mode('shared.log'), '0640', 'the mode logrotate gave the new file is kept');
ok($t->read_file('shared.log') =~ /"id":"\Q$second\E"/,
    'and the record is in it');
@start = grep { /$WARN/ } split /\n/, $t->read_file('error.log');
is(scalar @start, 1, 'a reopen says nothing more about the mode');
