#!/usr/bin/perl

# The audit trail loses nothing and invents nothing under load: N requests
# (WELBY_NOLOSS_N, default 20000) over 64 concurrent connections, allowed,
# refused and upstream errors mixed, while nginx (two workers) is reloaded
# five times and its files reopened twice, one event after the other.
# Each of the two sinks, one unbuffered and one with buffer=64k flush=1s,
# must then hold, over its current and rotated files, exactly one valid
# JSON record for every request the clients got an answer to, with the
# status they saw, and nothing else; and every file's hash chains must be
# intact.
#
# Each request carries its own X-Request-Id (a request id, which the
# gateway keeps: the test client is its welby_trusted_proxy with
# request_id=on) and Connection: close, so what nginx received is what was
# answered: there is no keep-alive request a reload could drop unread.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::IP;
use JSON::XS ();
use POSIX ();
use Time::HiRes qw(sleep time);
use Welby::Nginx;
use Welby::JWT qw(gen_key jwt write_jwks);

my $N = $ENV{WELBY_NOLOSS_N} || 20000;
my $CONNS = 64;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {
    worker_connections 1024;
}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_audit_log %%TESTDIR%%/buffered.log buffer=64k flush=1s;
    welby_audit_node gw-noloss;

    upstream echo {
        server 127.0.0.1:%%PORT_8081%%;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%% backlog=1024;
        welby_trusted_proxy 127.0.0.1 request_id=on;

        location / {
            welby on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://echo;
        }

        location /down/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        keepalive_requests 100000;
        location / { js_content echo.echo; }
    }
}
EOF

# Two workers, so that two streams write each file at once; and the error
# log at notice (reload() waits for "start worker process"), as the debug
# log of this many requests would be hundreds of megabytes.
{
    my $conf = $t->read_file('nginx.conf');
    $conf =~ s/^worker_processes 1;$/worker_processes 2;/m
        or die "no worker_processes line in the test globals\n";
    $conf =~ s{^(error_log \S+) debug;$}{$1 notice;}m
        or die "no error_log line in the test globals\n";
    $t->write_file('nginx.conf', $conf);
}

$t->run()->plan(20);

my $port = $t->port(8080);
my $tok = jwt(key => $key, set => { iss => 'https://issuer.test',
    aud => 'https://fhir.test', sub => 'nurse-14', jti => 'jti-noloss' });

# request kinds, in turn: [what, request head lines, expected status]
my @KINDS = (
    ['allowed',  "GET /Patient/p1", ["Authorization: Bearer $tok"], 200],
    ['no token', "GET /Patient/p1", [], 401],
    ['allowed',  "GET /Observation?code=x", ["Authorization: Bearer $tok"],
        200],
    ['PROPFIND', "PROPFIND /Patient/p1", ["Authorization: Bearer $tok"],
        405],
    ['upstream down', "GET /down/Patient/p1", ["Authorization: Bearer $tok"],
        502],
);

my %OUTCOME = (200 => 'allow', 401 => 'deny', 405 => 'deny', 502 => 'error');

# One request on its own connection: (status, X-Request-Id of the
# response), or () when no response came at all.
sub one {
    my ($kind, $id) = @_;

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 30) or return ();
    binmode $s;

    my $req = "$kind->[1] HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nX-Request-Id: $id\r\n"
        . join('', map { "$_\r\n" } @{ $kind->[2] }) . "\r\n";

    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($s, $req, length($req) - $off, $off);
        return () unless $n;
        $off += $n;
    }

    my ($reply, $sel) = ('', IO::Select->new($s));
    my $deadline = time() + 30;

    while (time() < $deadline && $sel->can_read($deadline - time())) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $reply .= $buf;
    }

    close $s;

    my ($status) = $reply =~ m{^HTTP/1\.[01] (\d{3}) } or return ();
    my ($head) = split /\r\n\r\n/, $reply, 2;
    my ($rid) = $head =~ /^X-Request-Id: *(\S+)/mi;
    return ($status, $rid // '');
}

# Seven events (five reloads and two reopens, as logrotate does them:
# rename, then USR1) at requests N/8, 2N/8, ..., spaced by requests
# answered, not by time.  The half phase before event k's place waits for
# the file start-k, which the parent writes as the event begins, once
# every earlier request is answered; what comes after waits for done-k,
# written once the event has finished.  So each event has requests sent
# while it runs, and requests before and after it, however fast the
# clients and however slow a reload.
my @events = qw(reload reload reopen reload reopen reload reload);
my $PHASE = $N / (@events + 1);

# the file request $i waits for, or undef
sub gate_of {
    my ($i) = @_;
    my $k = int($i / $PHASE);
    return "start-" . ($k + 1)
        if $k < @events && $i >= ($k + 1) * $PHASE - $PHASE / 2;
    return $k ? "done-$k" : undef;
}

# the number of requests before event k's start gate (k from 1)
sub before_event { return POSIX::ceil($_[0] * $PHASE - $PHASE / 2) }

# The clients: child c sends requests c, c + 64, ...  A request without a
# response is written down as such and sent again under a new id.  Each
# child writes "id kind status response-id" lines (status "-" for no
# response) and a byte to the progress pipe per request, once its gate
# (gate_of) is there.
pipe(my $progress_r, my $progress_w) or die "pipe: $!\n";

my $started = time();
my @children;

for my $c (0 .. $CONNS - 1) {
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        # the harness's END block must stay in the parent
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        close $progress_r;
        open my $out, '>', "$d/client-$c.tsv" or POSIX::_exit(2);

        for (my $i = $c; $i < $N; $i += $CONNS) {
            my $gate = gate_of($i);
            my $deadline = time() + 120;
            until (!defined $gate || -e "$d/$gate") {
                POSIX::_exit(3) if time() > $deadline;
                sleep 0.01;
            }

            my $k = $i % @KINDS;
            for my $try (0 .. 5) {
                my $id = "t14-$c-$i" . ($try ? "-r$try" : '');
                my ($status, $rid) = one($KINDS[$k], $id);
                print $out join("\t", $id, $k, $status // '-', $rid // ''),
                    "\n";
                last if defined $status;
            }
            syswrite($progress_w, '.');
        }

        close $out or POSIX::_exit(2);
        POSIX::_exit(0);
    }

    push @children, $pid;
}

close $progress_w;

# Meanwhile, the events.  reload() returns once the new workers have
# started, reopen() once the master and both current workers have
# reopened: a USR1 that reached the master together with a HUP would be
# inherited by the new workers, which then reopen before the master has
# made the new files theirs (and fail, as nobody may create them).
my ($progress, $reloads_ok, $reopens_ok, $rotation) = (0, 0, 0, 0);
my (@done_at, @during);
my $sel = IO::Select->new($progress_r);

while (1) {
    if (@done_at < @events && $progress >= before_event(@done_at + 1)) {
        my $e = $events[@done_at];
        $t->write_file('start-' . (@done_at + 1), '');

        if ($e eq 'reload') {
            $reloads_ok++ if $t->reload();

        } else {
            $rotation++;
            for my $f ('audit.log', 'buffered.log') {
                rename "$d/$f", "$d/$f.$rotation" or die "rename $f: $!\n";
            }
            $reopens_ok++ if $t->reopen();
        }

        # what was answered while the event ran
        my $during = 0;
        while ($sel->can_read(0)) {
            my $n = sysread($progress_r, my $buf, 4096) or last;
            $during += $n;
        }

        push @done_at, $progress;
        push @during, $during;
        $progress += $during;
        $t->write_file('done-' . scalar(@done_at), '');
        next;
    }

    next unless $sel->can_read(0.2);
    my $n = sysread($progress_r, my $buf, 4096);
    last unless $n;
    $progress += $n;
}

my $failed_children = 0;
for my $pid (@children) {
    waitpid($pid, 0);
    $failed_children++ if $?;
}

my $elapsed = time() - $started;
diag(sprintf('%d requests over %d connections in %.1f s (%.0f req/s); '
    . 'events at requests %s (answered while it ran)', $N, $CONNS,
    $elapsed, $N / $elapsed,
    join(', ', map { "$events[$_] $done_at[$_] ($during[$_])" }
        0 .. $#done_at)));

is($failed_children, 0, 'every client process finished its share');
is(scalar(@done_at) . " $reloads_ok $reopens_ok", '7 5 2',
    'five reloads (each started new workers) and two reopens (each seen '
    . 'by every worker) were done');
is("@done_at", join(' ', map { before_event($_) } 1 .. @events),
    'each of them after the requests before its place, with the rest '
    . 'still to be sent');

# what the clients saw

my (%answered, @unanswered, @wrong_status, @wrong_id);

for my $c (0 .. $CONNS - 1) {
    open my $in, '<', "$d/client-$c.tsv" or die "client-$c.tsv: $!\n";
    while (my $line = <$in>) {
        chomp $line;
        my ($id, $k, $status, $rid) = split /\t/, $line, -1;

        if ($status eq '-') {
            push @unanswered, $id;
            next;
        }

        die "id $id answered twice\n" if exists $answered{$id};
        $answered{$id} = $status;
        push @wrong_status, "$id ($KINDS[$k][0]): $status"
            if $status != $KINDS[$k][3];
        push @wrong_id, "$id: $rid" if $rid ne $id;
    }
}

my $answered = keys %answered;
is($answered, $N, "all $N requests were answered")
    or diag(scalar(@unanswered) . ' sent without a response (and sent'
        . ' again): ' . join(', ', @unanswered[0 .. ($#unanswered > 9
            ? 9 : $#unanswered)]));
is(scalar @wrong_status, 0,
    'each answer has the status of its kind (200, 401, 405, 502)')
    or diag(join "\n", @wrong_status[0 .. ($#wrong_status > 9
        ? 9 : $#wrong_status)]);
is(scalar @wrong_id, 0, 'each answer carries the request\'s own X-Request-Id')
    or diag(join "\n", @wrong_id[0 .. ($#wrong_id > 9 ? 9 : $#wrong_id)]);

# what the audit files hold, once nginx has stopped (and its workers
# written what they buffered)

$t->stop();

my $json = JSON::XS->new->utf8;

for my $sink ('audit.log', 'buffered.log') {
    my @files = grep { -e } map { "$d/$sink$_" } '', '.1', '.2';

    is(scalar(grep { -s } @files), 3,
        "$sink: the file and both rotated files hold records");

    my ($lines, $bad, %seen, @dup, @wrong, %streams) = (0, 0);

    for my $f (@files) {
        open my $in, '<', $f or die "$f: $!\n";
        while (my $line = <$in>) {
            $lines++;
            my $r = eval { $json->decode($line) };
            if (ref $r ne 'HASH' || !defined $r->{id}) {
                $bad++;
                next;
            }

            my $id = $r->{id};
            push @dup, $id if $seen{$id}++;
            $streams{$r->{stream} // ''} = 1;

            my $status = $r->{http}{status} // '';
            my $want = $answered{$id};
            push @wrong, "$id: record $status/" . ($r->{outcome} // '')
                . ', client ' . ($want // 'none')
                if defined $want
                && ($status ne $want
                    || ($r->{outcome} // '') ne $OUTCOME{$want});
        }
    }

    my @missing = grep { !$seen{$_} } sort keys %answered;
    my @extra = grep { !exists $answered{$_} } sort keys %seen;

    is($bad, 0, "$sink: every line is a valid JSON record with an id");
    is($lines, $answered, "$sink: exactly one line per answered request")
        or diag(scalar(@dup) . ' duplicates, ' . scalar(@missing)
            . ' missing, ' . scalar(@extra) . ' not answered');
    ok(!@missing && !@extra && !@dup,
        "$sink: the ids are exactly the answered requests' ids, once each")
        or diag('missing: ' . join(' ', @missing[0 .. ($#missing > 9
                ? 9 : $#missing)])
            . "\nnot answered: " . join(' ', @extra[0 .. ($#extra > 9
                ? 9 : $#extra)])
            . "\ntwice: " . join(' ', @dup[0 .. ($#dup > 9 ? 9 : $#dup)]));
    is(scalar @wrong, 0,
        "$sink: each record has the status the client saw, and its outcome")
        or diag(join "\n", @wrong[0 .. ($#wrong > 9 ? 9 : $#wrong)]);
    cmp_ok(scalar(keys %streams), '>=', 4,
        "$sink: written by workers of several generations");

    my $out = `$FindBin::Bin/../conf/audit-verify @files 2>&1`;
    is($? >> 8, 0, "$sink: audit-verify finds every chain intact")
        or diag $out;
}

diag(sprintf('elapsed, with the checks: %.1f s', time() - $started));
