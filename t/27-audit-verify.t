#!/usr/bin/perl

# The audit trail's chain across reopens and reloads, and what
# conf/audit-verify finds in files edited by someone who can write them
# (but not the syslog copy).
#
# Routine operations verify (exit 0): USR1 twice on a file nobody renamed
# (the chain goes on), a logrotate-style rename and USR1 (the new file
# names the old one's last line; each file verifies alone, and both
# together), a reload (a new stream from seq 1).  Every edit the design
# says shows in a file is reported in the default output with its line
# number: each removed, altered, inserted, moved or duplicated line (every
# one, not only the first of a stream), lines removed from a stream's
# start, a forged restart of the chain, a truncated line, and, between a
# rotated file and the next one, lines cut off or added to its end.
# What stays invisible (see conf/audit-verify --help) is not asserted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP ();
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
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_audit_log %%TESTDIR%%/fhir.log format=fhir;
    welby_audit_node gw-verify;

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

$t->run()->plan(43);

my $json = JSON::PP->new->utf8;
my $ZERO = '0' x 64;
my $n = 0;
my @IDS;    # the gateway's ids of the requests req() sent, in order

sub lines {
    my ($file) = @_;
    return split /^/, $t->read_file($file);
}

sub doc { return eval { $json->decode($_[0]) } // {} }

# one request, once its record is in both files
sub req {
    ++$n;
    my ($id) = http_req(uri => "/Patient/p$n")
        =~ /^X-Request-Id: ([^\r\n]+)/mi;
    $id //= 'none';
    push @IDS, $id;
    $t->wait_for(sub {
        !grep { $t->read_file($_) !~ /"id":"\Q$id\E"/ } 'audit.log', 'fhir.log'
    }) or diag("no record of $id in both files");
    return $id;
}

sub verify {
    my $out = `$FindBin::Bin/../conf/audit-verify @_ 2>&1`;
    return ($? >> 8, $out);
}

# a line given a chain computed from $prev, as a forger can: (line, chain)
sub rechain {
    my ($prev, $line) = @_;
    $line =~ s/\n\z//;
    my $p = substr($line, 0, length($line) - 76);
    my $c = sha256_hex($prev . $p);
    return ("$p,\"chain\":\"$c\"}\n", $c);
}

# lines from the first one given on, each chained from the one before it,
# the first from $prev
sub rechain_all {
    my ($prev, @lines) = @_;
    my @out;
    for my $l (@lines) {
        ($l, $prev) = rechain($prev, $l);
        push @out, $l;
    }
    return @out;
}

sub chain_of { return $_[0] =~ /"chain":"([0-9a-f]{64})"\}$/ ? $1 : '' }

# verify a tampered copy of a file
sub tampered {
    my ($name, @lines) = @_;
    $t->write_file($name, join '', @lines);
    return verify("$d/$name");
}

# a routine reopen, twice, of a file nobody renamed: the chain goes on

req() for 1 .. 2;
$t->reopen() or diag('no "reopening logs" from every process');
req() for 1 .. 2;
$t->reopen() or diag('no "reopening logs" from every process');
req() for 1 .. 7;

my ($rc, $out) = verify("$d/audit.log");
ok($rc == 0 && $out =~ m{/audit\.log: ok, 11 records, 1 stream$}m,
    'two USR1 reopens of the same file: audit-verify exit 0, 11 records')
    or diag "exit $rc: $out";
my @clean = lines('audit.log');
is(join(',', map { doc($_)->{seq} // '-' } @clean), join(',', 1 .. 11),
    'one stream numbered 1 to 11 across the reopens');
is(scalar(grep { /"continues"/ } @clean), 0,
    'the same file: no line starts a new chain');

# logrotate: rename, USR1

for my $f ('audit.log', 'fhir.log') {
    rename "$d/$f", "$d/$f.1" or die "rename $f: $!";
}
$t->reopen() or diag('no "reopening logs" from every process');
req() for 1 .. 2;

my @new = lines('audit.log');
my $first = doc($new[0] // '');
is(join(' ', $first->{seq} // '-', $first->{continues}{seq} // '-',
        $first->{continues}{chain} // '-'),
    '12 11 ' . chain_of($clean[-1]),
    'the new file\'s first line continues the old file\'s last (seq 11)');
($rc, $out) = verify("$d/audit.log");
ok($rc == 0 && $out =~ m{/audit\.log: ok, 2 records, 1 stream \(1 continues a file not given\)$}m,
    'the new file verifies alone, and says it continues a file not given')
    or diag "exit $rc: $out";
($rc, $out) = verify("$d/audit.log.1");
ok($rc == 0 && $out =~ m{/audit\.log\.1: ok, 11 records, 1 stream$}m,
    'the rotated file verifies alone') or diag "exit $rc: $out";
($rc, $out) = verify("$d/audit.log", "$d/audit.log.1");
ok($rc == 0 && $out =~ m{/audit\.log: ok, 2 records, 1 stream$}m
    && $out =~ m{/audit\.log\.1: ok, 11 records, 1 stream$}m,
    'both together: the link between them holds') or diag "exit $rc: $out";
($rc, $out) = verify("$d/fhir.log.1", "$d/fhir.log");
ok($rc == 0 && $out =~ m{/fhir\.log: ok, 2 records, 1 stream$}m
    && $out =~ m{/fhir\.log\.1: ok, 11 records, 1 stream$}m,
    'format=fhir: the same link between the files') or diag "exit $rc: $out";

# a reload: a new worker, a new stream from seq 1

$t->reload() or diag('reload: no new worker');
req();
my @now = lines('audit.log');
my $last = doc($now[-1] // '');
ok(($last->{seq} // 0) == 1 && !$last->{continues}
    && ($last->{stream} // '') ne ($first->{stream} // ''),
    'after a reload, the new worker\'s stream starts at seq 1');
($rc, $out) = verify("$d/audit.log.1", "$d/audit.log");
ok($rc == 0 && $out =~ m{/audit\.log: ok, 3 records, 2 streams$}m,
    'after the reload: exit 0, two streams') or diag "exit $rc: $out";

# edits inside a file (the 11 lines of the first one)

$t->write_file('copy.log', join '', @clean);
my ($clean_rc, $clean_out) = verify("$d/copy.log");
$t->write_file('copy.log', join '', @clean[0 .. 7, 9, 10]);
($rc, $out) = verify("$d/copy.log");
ok($rc == 1 && $out ne $clean_out
    && $out =~ m{/copy\.log:9: stream \S+ on gw-verify: chain broken: seq 9 missing before it}
    && $out =~ m{/copy\.log: NOT INTACT, 1 finding, 10 records, 1 stream$}m,
    'line 9 of 11 removed: exit 1, "seq 9 missing" at line 9, not the clean '
    . 'output') or diag "exit $rc: $out";

($rc, $out) = tampered('two.log', @clean[0, 1, 3 .. 5, 7 .. 10]);
ok($rc == 1 && $out =~ m{/two\.log:3: .*seq 3 missing}
    && $out =~ m{/two\.log:6: .*seq 7 missing}
    && $out =~ /NOT INTACT, 2 findings/,
    'two lines removed: both breaks reported (lines 3 and 6)')
    or diag "exit $rc: $out";

my $altered = $clean[4];
$altered =~ s{"path":"/Patient/p5"}{"path":"/Patient/p6"} or die 'no path';
($rc, $out) = tampered('altered.log', @clean[0 .. 3], $altered,
    @clean[5 .. 10]);
ok($rc == 1 && $out =~ m{/altered\.log:5: .*this line was altered}
    && $out =~ /1 finding,/,
    'a value altered: reported at its line (5)') or diag "exit $rc: $out";

my ($resealed) = rechain(chain_of($clean[3]), $altered);
($rc, $out) = tampered('resealed.log', @clean[0 .. 3], $resealed,
    @clean[5 .. 10]);
ok($rc == 1 && $out =~ m{/resealed\.log:6: .*the line before it of its stream \(line 5}
    && $out =~ /1 finding,/,
    'a value altered and its chain recomputed: the next line (6) says so')
    or diag "exit $rc: $out";

my $forged = $clean[3];
$forged =~ s/"id":"[^"]+"/"id":"forged-04"/ or die 'no id';
$forged =~ s/"seq":4,/"seq":5,/ or die 'no seq';
($forged) = rechain(chain_of($clean[3]), $forged);
($rc, $out) = tampered('inserted.log', @clean[0 .. 3], $forged,
    @clean[4 .. 10]);
ok($rc == 1 && $out =~ m{/inserted\.log:6: .*seq 5 after seq 5 \(line 5},
    'a line inserted with a valid chain: the next line (6) breaks, seq 5 '
    . 'after seq 5') or diag "exit $rc: $out";

($rc, $out) = tampered('swapped.log', @clean[0 .. 4, 6, 5, 7 .. 10]);
ok($rc == 1 && $out =~ m{/swapped\.log:6: .*seq 6 missing}
    && $out =~ m{/swapped\.log:7: .*seq 6 after seq 7}
    && $out =~ m{/swapped\.log:8: .*seq 7 missing}, 'two lines swapped: each break')
    or diag "exit $rc: $out";

($rc, $out) = tampered('dup.log', @clean[0 .. 3], $clean[3], @clean[4 .. 10]);
ok($rc == 1 && $out =~ m{/dup\.log:5: .*seq 4 after seq 4},
    'a line duplicated: reported at the copy') or diag "exit $rc: $out";

($rc, $out) = tampered('head.log', @clean[1 .. 10]);
ok($rc == 1 && $out =~ m{/head\.log:1: .*first line in this file but does not chain from zeros: seq 1 missing before it},
    'the first line of a stream removed: reported at line 1')
    or diag "exit $rc: $out";

($rc, $out) = tampered('rehead.log', rechain_all($ZERO, @clean[3 .. 10]));
ok($rc == 1 && $out =~ m{/rehead\.log:1: .*starts here at seq 4 without naming the line it continues: seq 1\.\.3 are missing},
    'three first lines removed and the rest rechained from zeros: seq 1..3 '
    . 'missing') or diag "exit $rc: $out";

($rc, $out) = tampered('rechained.log', @clean[0 .. 3],
    rechain_all(chain_of($clean[3]), @clean[5 .. 10]));
ok($rc == 1 && $out =~ m{/rechained\.log:5: .*seq 6 follows seq 4 in an intact chain: seq 5 missing},
    'a line removed and the rest rechained: the seq jump at line 5')
    or diag "exit $rc: $out";

my @noseq = map { my $l = $_; $l =~ s/"seq":\d+,//; $l } @clean[3 .. 10];
($rc, $out) = tampered('noseq.log', rechain_all($ZERO, @noseq));
ok($rc == 1 && $out =~ m{/noseq\.log:1: .*no "seq"}
    && $out =~ /NOT INTACT, 8 findings/,
    'the first lines removed and the rest rechained without seq: each line '
    . 'reported') or diag "exit $rc: $out";

# forged restarts in the middle of a stream, hiding lines 5 and 6

($rc, $out) = tampered('restart.log', @clean[0 .. 3],
    rechain_all($ZERO, @clean[6 .. 10]));
ok($rc == 1 && $out =~ m{/restart\.log:5: .*starts again from zeros in the middle of its stream \(after line 4, seq 4\), without naming},
    'a chain restarted from zeros mid-stream: reported at line 5')
    or diag "exit $rc: $out";

my $marker = $clean[6];
my $cont = '"continues":{"seq":6,"chain":"' . chain_of($clean[5]) . '"},';
$marker =~ s/,"chain":"/,$cont"chain":"/ or die 'no chain';
($rc, $out) = tampered('marker.log', @clean[0 .. 3],
    rechain_all($ZERO, $marker, @clean[7 .. 10]));
ok($rc == 1 && $out =~ m{/marker\.log:5: .*in the middle of its stream \(after line 4, seq 4\), naming seq 6 as the line before it: seq 5\.\.6 missing},
    'a forged "continues" marker mid-stream: reported at line 5')
    or diag "exit $rc: $out";

# a marker naming the line before it: nothing missing is a note; with
# lines removed before it, their seq numbers show
my $linked = $clean[4];
$cont = '"continues":{"seq":4,"chain":"' . chain_of($clean[3]) . '"},';
$linked =~ s/,"chain":"/,$cont"chain":"/ or die 'no chain';
($rc, $out) = tampered('linked.log', @clean[0 .. 3],
    rechain_all($ZERO, $linked, @clean[5 .. 10]));
ok($rc == 0 && $out =~ m{/linked\.log:5: .*note: its chain starts again from zeros here, naming the line before it \(line 4, seq 4\): nothing is missing}
    && $out =~ m{/linked\.log: ok, 11 records},
    'a restart that names the line before it: a note, exit 0')
    or diag "exit $rc: $out";
$linked = $clean[6];
$linked =~ s/,"chain":"/,$cont"chain":"/ or die 'no chain';
($rc, $out) = tampered('skipped.log', @clean[0 .. 3],
    rechain_all($ZERO, $linked, @clean[7 .. 10]));
ok($rc == 1 && $out =~ m{/skipped\.log:5: .*naming the line before it, but it is seq 7: seq 5\.\.6 missing},
    'a marker naming the line before it over removed lines: seq 5..6 missing')
    or diag "exit $rc: $out";

my @renumbered = map { my $l = $clean[$_]; my $s = $_ - 5;
    $l =~ s/"seq":\d+,/"seq":$s,/; $l } 6 .. 10;
($rc, $out) = tampered('fresh.log', @clean[0 .. 3],
    rechain_all($ZERO, @renumbered));
ok($rc == 1 && $out =~ m{/fresh\.log:5: .*in the middle of its stream .*, as a new stream},
    'a forged fresh start (seq 1) mid-stream: reported at line 5')
    or diag "exit $rc: $out";

# truncated lines

my $half = substr($clean[10], 0, int(length($clean[10]) / 2)) . "\n";
($rc, $out) = tampered('cut.log', @clean[0 .. 9], $half);
ok($rc == 2 && $out =~ m{/cut\.log:11: not a chained audit record},
    'the last line cut in half: exit 2, line 11 is not a chained record')
    or diag "exit $rc: $out";

$half = substr($clean[4], 0, 100) . "\n";
($rc, $out) = tampered('cutmid.log', @clean[0 .. 3], $half, @clean[5 .. 10]);
ok($rc == 2 && $out =~ m{/cutmid\.log:5: not a chained audit record}
    && $out =~ m{/cutmid\.log:6: .*seq 5 missing},
    'a middle line cut: reported, and the next line of its stream breaks')
    or diag "exit $rc: $out";

# between a rotated file and the next one

my @rotated = lines('audit.log.1');
my @current = lines('audit.log');

$t->write_file('end.log.1', join '', @rotated[0 .. 9]);
$t->write_file('end.log', join '', @current);
($rc, $out) = verify("$d/end.log.1", "$d/end.log");
ok($rc == 1 && $out =~ m{/end\.log\.1:10: .*ends here at seq 10, but \S+/end\.log:1 goes on from seq 11: seq 11 were cut off the end of this file}
    && $out =~ m{/end\.log\.1: NOT INTACT}m,
    'the rotated file\'s last line cut: found against the next file')
    or diag "exit $rc: $out";

my $relinked = $current[0];
$relinked =~ s/"continues":\{"seq":11,/"continues":{"seq":9,/ or die 'no link';
($rc, $out) = tampered('relinked.log', rechain_all($ZERO, $relinked),
    @current[1, 2]);
ok($rc == 1 && $out =~ m{/relinked\.log:1: .*it is seq 12 and continues seq 9: seq 10\.\.11 missing},
    'a continues line whose seq is not the one before its own: line 1')
    or diag "exit $rc: $out";

# a second writer made from the first (another stream id, rechained, its
# new file's first line naming its own last line): all its lines removed
# from the rotated file leave a note where it continues
sub second {
    my ($prev, @l) = @_;
    return rechain_all($prev, map { my $x = $_;
        $x =~ s/"stream":"[^"]+"/"stream":"9.9"/; $x } @l);
}
my @second_old = second($ZERO, @rotated);
my $second_first = $current[0];
my $c2 = chain_of($second_old[-1]);
$second_first =~ s/"continues":\{"seq":11,"chain":"[0-9a-f]{64}"\}/"continues":{"seq":11,"chain":"$c2"}/
    or die 'no link';
my @second_new = second($ZERO, $second_first, $current[1]);
$t->write_file('two-writers.log.1', join '', @rotated, @second_old);
$t->write_file('two-writers.log', join '', @current, @second_new);
($rc, $out) = verify("$d/two-writers.log.1", "$d/two-writers.log");
ok($rc == 0 && $out !~ /note:|not given/,
    'two writers, both linked: exit 0, nothing noted') or diag "exit $rc: $out";
$t->write_file('two-writers.log.1', join '', @rotated);
($rc, $out) = verify("$d/two-writers.log.1", "$d/two-writers.log");
ok($rc == 0 && $out =~ m{/two-writers\.log:4: stream 9\.9 on gw-verify: note: it continues seq 11 of its stream, which no file given holds, though other streams here go on from \S+/two-writers\.log\.1}
    && $out =~ /\(1 continues a file not given\)/,
    'one writer\'s lines all removed from the rotated file: a note where it '
    . 'continues') or diag "exit $rc: $out";

# two JSON files of one writer hold the same lines: one intact copy does
# not hide the other's cut end
$t->write_file('sinka.log.1', join '', @rotated[0 .. 9]);
$t->write_file('sinka.log', join '', @current);
$t->write_file('sinkb.log.1', join '', @rotated);
$t->write_file('sinkb.log', join '', @current);
($rc, $out) = verify(map { "$d/$_" } 'sinka.log.1', 'sinka.log',
    'sinkb.log.1', 'sinkb.log');
ok($rc == 1 && $out =~ m{/sinka\.log\.1:10: .*seq 11 were cut off the end}
    && $out =~ /NOT INTACT, 1 finding/,
    'the cut end of a file found though another sink\'s copy is intact')
    or diag "exit $rc: $out";

my $extra = $rotated[10];
$extra =~ s/"seq":11,/"seq":12,/ or die 'no seq';
$extra =~ s/"id":"[^"]+"/"id":"forged-12"/ or die 'no id';
($extra) = rechain(chain_of($rotated[10]), $extra);
$t->write_file('more.log.1', join '', @rotated, $extra);
$t->write_file('more.log', join '', @current);
($rc, $out) = verify("$d/more.log.1", "$d/more.log");
ok($rc == 1 && $out =~ m{/more\.log\.1:12: .*goes on here to seq 12, past seq 11, which \S+/more\.log:1 names as the line before it},
    'a line added to the end of the rotated file: found against the next '
    . 'file') or diag "exit $rc: $out";

$t->write_file('moved.log.1', join '', @rotated[0 .. 3, 5 .. 10]);
$t->write_file('moved.log', join '', @current, $rotated[4]);
($rc, $out) = verify("$d/moved.log.1", "$d/moved.log");
ok($rc == 1 && $out =~ m{/moved\.log\.1:5: .*seq 5 missing}
    && $out =~ m{/moved\.log:4: .*seq 5 after seq 13},
    'a line moved from the rotated file to the next: found in both')
    or diag "exit $rc: $out";

# a line given to another stream

my ($b_stream) = map { doc($_)->{stream} } $current[-1];
my $other = $current[1];
$other =~ s/"stream":"[^"]+"/"stream":"$b_stream"/ or die 'no stream';
($rc, $out) = tampered('stream.log', $current[0], $other, $current[2]);
ok($rc == 1 && $out =~ m{/stream\.log:2: stream \Q$b_stream\E on gw-verify: chain broken},
    'a line moved to another stream: that stream breaks there')
    or diag "exit $rc: $out";

# the verifier's own interface

($rc, $out) = verify('--verbose', "$d/audit.log.1", "$d/audit.log");
ok($rc == 0 && $out =~ /: 2 records, seq 12\.\.13, last chain [0-9a-f]{64}, continues seq 11$/m,
    '--verbose: each stream\'s seq range, last chain and link')
    or diag "exit $rc: $out";

$t->write_file('empty.log', '');
($rc, $out) = verify("$d/empty.log");
ok($rc == 2 && $out =~ /empty\.log: no records/,
    'a file with no record: exit 2, "no records"') or diag "exit $rc: $out";

($rc, $out) = verify("$d/absent.log");
ok($rc == 2 && $out =~ /absent\.log: cannot open/,
    'a file that cannot be read: exit 2') or diag "exit $rc: $out";

# the clean copies, once more: none of the above came from the verifier
# misreading the real files

($rc, $out) = verify("$d/audit.log.1", "$d/audit.log", "$d/fhir.log.1",
    "$d/fhir.log");
ok($rc == 0 && $out !~ /NOT INTACT|note:/, 'the real files: all intact')
    or diag "exit $rc: $out";
is(scalar(() = $out =~ /: ok, /g), 4, 'four files, each ok');

# nothing lost or added by the reopens, the rotation and the reload

is(join(',', map { doc($_)->{id} } @rotated),
    join(',', @IDS[0 .. 10]),
    'the rotated file holds the first 11 requests, in order');
is(join(',', map { doc($_)->{id} } @current),
    join(',', @IDS[11 .. 13]), 'the current one the rest');
