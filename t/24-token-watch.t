#!/usr/bin/perl

# The workers' watch of the files they reload without nginx -s reload:
# welby_issuer's keys file (refresh=) and the revocation list
# (welby_revocation check=), here both at 100ms.
#
# - A version is everything stat() says of the file: a fixed file written
#   in the same mtime second as a broken one (utime() makes them share
#   it), even with the same size, is read and loaded; a touched file is
#   not reloaded; a file read soon after a change is read once more.
# - A worker that cannot stat or read a watched file says so at [error]
#   (the file and errno, once, not on every check) and at [notice] when it
#   can again; nginx -t warns when the worker user cannot read one.
# - The revocation list's trailing comments, and the errors of check= and
#   refresh= at nginx -t.
#
# No sleep decides anything: every wait polls error.log for the line that
# says the worker has done the thing checked next.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

plan(skip_all => 'njs (the echo backend) is not installed')
    unless $t->has_js;
plan(skip_all => 'run as root: the workers must run as another user')
    unless $> == 0;

my $ISS = 'https://watch.test';
my $AUD = 'https://fhir.test';
my $NOW = int(time());

my $K1 = gen_key('ES256', kid => 'k1');
my $K2 = gen_key('ES256', kid => 'k2');
my $K3 = gen_key('EdDSA', kid => 'k3');

my $KEYS = "$d/keys/watch.jwks";
my $REV = "$d/rev/revoked.txt";

mkdir "$d/$_" or die "mkdir $d/$_: $!" for qw(keys rev locked private);
chmod 0755, "$d/keys", "$d/rev", "$d/private";
chmod 0700, "$d/locked";

write_jwks($KEYS, $K1);

# the README's example, trailing comment and all
my $LEFT = $NOW - 10;
$t->write_file('rev/revoked.txt', <<"EOF");
# one entry per line; '#' comments
jti 5f0c1c9e-7d5e-4c59-a2a1-0d8a4e7b9c11
sub nurse-0042 $LEFT     # every token of nurse-0042 issued before this unix time
EOF

my $CONF = <<'EOF';
%%TEST_GLOBALS%%
user nobody nogroup;    # the user the checks below are about

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://watch.test keys=%%TESTDIR%%/keys/watch.jwks
                 audience=https://fhir.test refresh=100ms;
    welby_revocation %%TESTDIR%%/rev/revoked.txt check=100ms;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            js_content echo.echo;
        }
    }
}
EOF

$t->write_file_expand('nginx.conf', $CONF);

# before the start: the warnings of nginx -t are compared with this
my ($code, $out) = $t->test_config();

$t->run()->plan(44);

is($code, 0, 'nginx -t accepts check=100ms and refresh=100ms')
    or diag($out);
unlike($out, qr/worker user/,
    'nginx -t: no warning when the worker user can read the watched files')
    or diag($out);

###############################################################################
# helpers

sub tok {
    my ($k, %set) = @_;
    return jwt(key => $k, set => { iss => $ISS, aud => $AUD, %set });
}

# "status reason"
sub result {
    my ($tok) = @_;
    my $r = parse_response(http_req(uri => '/fhir/Patient/p1',
        headers => ["Authorization: Bearer $tok"]));
    return 'no response' unless $r;
    my $j = $r->json;
    my $code = $j && eval { $j->{issue}[0]{details}{coding}[0]{code} };
    return $r->status . ' ' . ($code // '');
}

sub log_size { return length $t->read_file('error.log') }

# the lines of error.log written since byte $from that match $re
sub log_lines {
    my ($from, $re) = @_;
    my $log = $t->read_file('error.log');
    return grep { $_ =~ $re } split /\n/, substr($log, $from);
}

# polls error.log (10 s at most) for a line since $from; returns it
sub wait_log {
    my ($from, $re) = @_;
    my $deadline = time() + 10;
    while (1) {
        my ($line) = log_lines($from, $re);
        return $line if defined $line;
        return undef if time() > $deadline;
        sleep 0.05;
    }
}

# wait_log() for the line a change of a file makes, timed
my @latency;

sub seen {
    my $start = time();
    my $line = wait_log(@_);
    push @latency, time() - $start if defined $line;
    return $line;
}

# rewrites a file in place (same inode, as an editor that truncates
# does), with the given mtime second, nanoseconds zero
sub put {
    my ($path, $content, $mtime) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh or die "cannot write $path: $!\n";
    utime($mtime, $mtime, $path) or die "utime $path: $!\n" if $mtime;
}

# how the lines this file waits for start
my $RL = qr/welby: revocation list "\Q$REV\E"/;
my $KF = qr/welby: issuer "\Q$ISS\E": keys file "\Q$KEYS\E"/;

my $has_debug = $t->read_file('error.log') =~ /\[debug\]/;
my $M = $NOW - 100;     # the mtime second the versions below share

###############################################################################
# the revocation list, and its trailing comments through nginx

is(result(tok($K1)), '200 ', 'a token of the published key accepted');
is(result(tok($K1, sub => 'nurse-0042', iat => $LEFT - 60)),
    '401 token_revoked',
    'a sub line with a trailing comment (the README example) revokes '
    . 'the tokens issued before its time');
is(result(tok($K1, sub => 'nurse-0042', iat => $NOW)), '200 ',
    'and not those issued after it');

# a partial file, then the complete one, in the same mtime second
my $J1 = 'jti-watch-1';
my $T1 = tok($K1, jti => $J1);
is(result($T1), '200 ', 'before the revocation: the token accepted');

my $at = log_size();
put($REV, "jti revoked-0\njti\n", $M);
ok(seen($at, qr/\[error\].*$RL not reloaded, old list kept: line 2: no value/),
    'a partial revocation list is refused: [error] "line 2: no value"');

$at = log_size();
put($REV, "jti revoked-0\njti $J1\n", $M);
ok(seen($at, qr/\[notice\].*$RL reloaded, 2 entries/),
    'the complete list written in the same mtime second is reloaded');
is(result($T1), '401 token_revoked',
    'the jti of the complete list is revoked at once');

# same size, same mtime to the nanosecond, other content: only the
# ctime (and the content) differs
my $J2 = 'jti-watch-2';
my $T2 = tok($K1, jti => $J2);

$at = log_size();
put($REV, "jti revoked-0\nkid $J2\n", $M);
ok(seen($at, qr/\[error\].*$RL not reloaded, old list kept: line 2: /
    . qr/unknown kind "kid"/),
    'a broken list is refused: [error] unknown kind "kid"');
my @broken = (stat $REV)[7, 9];

$at = log_size();
put($REV, "jti revoked-0\njti $J2\n", $M);
my @fixed = (stat $REV)[7, 9];
die "the fixed list must keep the broken one's size and mtime\n"
    unless "@broken" eq "@fixed";
ok(seen($at, qr/\[notice\].*$RL reloaded, 2 entries/),
    'a fixed list of the same size and mtime is reloaded');
is(result($T2), '401 token_revoked', 'its jti is revoked');
is(result($T1), '200 ', 'and the jti it no longer lists is not');

SKIP: {
    skip 'nginx without debug logging', 3 unless $has_debug;

    # read once more after the change: the same content, nothing reloaded
    ok(wait_log($at, qr/\[debug\].*$RL read again: /
        . qr/the last read was too close to its last change/),
        'a list read within 3 s of its change is read once more');
    ok(wait_log($at, qr/$RL has the same content/),
        'and found with the same content');
    is(scalar log_lines($at, qr/welby: revocation list .* reloaded/), 1,
        'so it is reloaded once, not twice');
}

# a broken list touched: read, the same content, not refused again.
# Renamed into place: written in place, the worker may read the empty
# file between open(O_TRUNC) and write(), a valid list of no entries,
# which would then stay in force behind the broken one.
$at = log_size();
put("$REV.new", "jti revoked-0\nkid $J2\n");
rename("$REV.new", $REV) or die "rename: $!\n";
ok(seen($at, qr/\[error\].*$RL not reloaded/),
    'a broken list is refused again');

SKIP: {
    skip 'nginx without debug logging', 1 unless $has_debug;

    my $touched = log_size();
    utime(undef, undef, $REV) or die "utime: $!\n";
    wait_log($touched,
        qr/$RL has the same content/);
    is(scalar log_lines($at, qr/\[error\].*welby: revocation list/), 1,
        'touched, it is read and found unchanged: no second [error]');
}

is(result($T2), '401 token_revoked',
    'while the file is broken the last good list stays in force');

$at = log_size();
put($REV, "jti revoked-0\njti $J2\njti $J1\n", $M);
ok(seen($at, qr/\[notice\].*$RL reloaded, 3 entries/),
    'the list is fixed again');

###############################################################################
# the keys file, in the same mtime second

$at = log_size();
put($KEYS, '{"keys": [', $M);
ok(seen($at, qr/\[error\].*$KF not reloaded, old keys kept/),
    'a broken keys file is refused: [error] naming it');
is(result(tok($K1)), '200 ', 'and the old key still verifies tokens');

$at = log_size();
write_jwks($KEYS, $K2);
utime($M, $M, $KEYS) or die "utime: $!\n";
ok(seen($at, qr/\[notice\].*welby: issuer "\Q$ISS\E": /
    . qr/keys reloaded from "\Q$KEYS\E", 1 keys/),
    'the fixed keys file of the same mtime second is reloaded');
is(result(tok($K2)) . ', ' . result(tok($K1)), '200 , 401 token_key',
    'its key is used, the removed one refused');

my ($slowest) = sort { $b <=> $a } @latency;
ok($slowest < 1.5,
    sprintf('check=100ms, refresh=100ms: each change seen within 1.5 s '
        . '(slowest %.2f s; the read once more comes 2 to 3 s after a '
        . 'change, check=5s up to 5 s)', $slowest));

###############################################################################
# a list the workers cannot stat or read

chmod 0700, "$d/rev" or die "chmod: $!";
$at = log_size();
my $line = wait_log($at, qr/\[error\].*$RL cannot be checked/);
my $stat_failed = qr/the version read last stays in use: /
    . qr/stat\(\) failed \(13: Permission denied\)$/;
like($line // '', qr/$stat_failed/,
    'a list in a directory the workers cannot search: [error] naming the '
    . 'file, stat() and the errno');
unlike($line // '', qr/jti-watch|revoked-0/, 'and no entry of the list');

# two keys reloads: the same timer has checked the list again since
for my $keys ([$K3], [$K2, $K3]) {
    my $from = log_size();
    write_jwks($KEYS, @$keys);
    wait_log($from, qr/welby: issuer .* keys reloaded/);
}
is(scalar log_lines($at, qr/welby: revocation list .* cannot be checked/), 1,
    'checked again and again, the list is named once (then once a minute)');
is(result(tok($K2, jti => $J1)), '401 token_revoked',
    'meanwhile the list read last stays in force');

$at = log_size();
chmod 0755, "$d/rev" or die "chmod: $!";
ok(wait_log($at, qr/\[notice\].*$RL can be checked again/),
    'searchable again: [notice] that it can be checked again');

my $J3 = 'jti-watch-3';
$at = log_size();
put($REV, "jti revoked-0\njti $J2\njti $J1\njti $J3\n");
ok(wait_log($at, qr/$RL reloaded, 4 entries/),
    'then a change to it is reloaded');
is(result(tok($K2, jti => $J3)), '401 token_revoked',
    'and a jti revoked since is refused');

# a file the workers can stat but not open
$at = log_size();
chmod 0600, $REV or die "chmod: $!";
ok(wait_log($at, qr/\[error\].*$RL cannot be checked, the version read /
    . qr/last stays in use: open\(\) failed \(13: Permission denied\)/),
    'a list the workers cannot open: [error] naming open() and the errno');

$at = log_size();
chmod 0644, $REV or die "chmod: $!";
ok(wait_log($at, qr/\[notice\].*$RL can be checked again/),
    'readable again: [notice]');

###############################################################################
# nginx -t: the worker user cannot read a watched file

sub t_conf {
    my ($name, $http, $no_user) = @_;
    (my $c = $CONF)
        =~ s/^    welby_issuer .*?;\n    welby_revocation .*?;\n/    $http\n/ms
        or die "no watched files in the config\n";
    $c =~ s/^user .*\n//m or die "no user in the config\n" if $no_user;
    $t->write_file_expand($name, $c);
    return $t->test_config($name);
}

$t->write_file('locked/revoked.txt', "jti a\n");
($code, $out) = t_conf('locked.conf',
    "welby_revocation $d/locked/revoked.txt;");
my $want = qr{\[warn\] welby: revocation list "\Q$d\E/locked/revoked\.txt": }
    . qr{worker user "nobody" cannot read it, }
    . qr{no search permission on directory "\Q$d\E/locked"};
ok($code == 0 && $out =~ $want,
    'nginx -t warns: the worker user cannot search the directory of the '
    . 'revocation list') or diag("exit $code: $out");

# the issue's own case: no user directive, nginx started as root, so the
# workers run as nginx's default user
($code, $out) = t_conf('default-user.conf',
    "welby_revocation $d/locked/revoked.txt;", 'no user');
ok($code == 0 && $out =~ $want,
    'nginx -t warns the same without a user directive (the default user)')
    or diag("exit $code: $out");

$t->write_file('private/revoked.txt', "jti a\n");
chmod 0600, "$d/private/revoked.txt";
($code, $out) = t_conf('private.conf',
    "welby_revocation $d/private/revoked.txt;");
$want = qr{\[warn\] welby: revocation list "\Q$d\E/private/revoked\.txt": }
    . qr{worker user "nobody" cannot read it, no read permission on the file};
ok($code == 0 && $out =~ $want,
    'nginx -t warns: the worker user cannot read the file (0600, root)')
    or diag("exit $code: $out");

chmod 0640, "$d/private/revoked.txt";
chown 0, scalar getgrnam('nogroup'), "$d/private/revoked.txt";
($code, $out) = t_conf('group.conf',
    "welby_revocation $d/private/revoked.txt;");
ok($code == 0 && $out !~ /worker user/,
    'nginx -t: no warning for a file readable by the worker\'s group')
    or diag("exit $code: $out");

write_jwks("$d/locked/k.jwks", $K1);
($code, $out) = t_conf('locked-keys.conf',
    "welby_issuer $ISS keys=$d/locked/k.jwks audience=$AUD refresh=1s;");
$want = qr{\[warn\] welby: issuer "\Q$ISS\E": keys file }
    . qr{"\Q$d\E/locked/k\.jwks": worker user "nobody" cannot read it, }
    . qr{no search permission on directory "\Q$d\E/locked"};
ok($code == 0 && $out =~ $want,
    'nginx -t warns for a keys file with refresh= too')
    or diag("exit $code: $out");

###############################################################################
# check= and refresh= at nginx -t

my %bad = (
    'check=0' => "welby_revocation $REV check=0;",
    'check=5x' => "welby_revocation $REV check=5x;",
    'refresh=0' =>
        "welby_issuer $ISS keys=$KEYS audience=$AUD refresh=0;",
    'refresh=1y' =>
        "welby_issuer $ISS keys=$KEYS audience=$AUD refresh=1y;",
);

for my $what (sort keys %bad) {
    ($code, $out) = t_conf("bad-$what.conf", $bad{$what});
    my $in = $what =~ /^check/ ? 'welby_revocation'
        : "welby_issuer \"\Q$ISS\E\"";
    my $want = qr/\[emerg\] invalid parameter "\Q$what\E" in $in, /
        . qr/it must be a time of at least 1ms, such as "\d+[sm]" or "500ms"/;
    ok($code != 0 && $out =~ $want,
        "nginx -t refuses $what, saying it must be a time of at least 1ms")
        or diag("exit $code: $out");
}

($code, $out) = t_conf('ok.conf', "welby_revocation $REV check=1s500ms;\n"
    . "    welby_issuer $ISS keys=$KEYS audience=$AUD refresh=2;");
is($code, 0, 'nginx -t accepts check=1s500ms and refresh=2 (seconds)')
    or diag($out);

###############################################################################
# This file provokes [error] lines on purpose, each asserted above: move
# exactly those to expected-errors.log, so that the teardown still checks
# every other line.

$t->stop();
my (@keep, @moved);
for my $line (split /\n/, $t->read_file('error.log')) {
    if ($line =~ /\[error\].*(?:$RL|$KF) (?:not reloaded|cannot be checked)/) {
        push @moved, $line;
    } else {
        push @keep, $line;
    }
}
$t->write_file('expected-errors.log', join("\n", @moved, ''));
$t->write_file('error.log', join("\n", @keep, ''));
