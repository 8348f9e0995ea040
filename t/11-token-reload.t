#!/usr/bin/perl

# Key rotation.
#
# With nginx -s reload: tokens of the old key are refused once the JWKS
# has been replaced and nginx reloaded, tokens of the new key accepted,
# and a client sending requests all through the reload (with a key that
# both files hold) sees no failed request.
#
# With refresh=1s and no reload: the workers pick up a rotated file by
# themselves; a broken file keeps the old keys and logs an [error] naming
# the file; the fixed file, written in the same mtime second, is picked up
# too.  Every wait is for the error.log line that says the worker read the
# file (more of the watch in t/24-token-watch.t).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

plan(skip_all => 'njs (the echo backend) is not installed')
    unless $t->has_js;

my $AUD = 'https://fhir.test';
my $ROT = 'https://rotate.test';
my $REF = 'https://refresh.test';

my $A  = gen_key('ES256', kid => 'key-a');
my $A2 = gen_key('ES256', kid => 'key-a');    # new material, same kid
my $B  = gen_key('RS256', kid => 'key-b');
my $C  = gen_key('EdDSA', kid => 'key-c');    # in every file
my $R1 = gen_key('ES256', kid => 'r1');
my $R2 = gen_key('ES384', kid => 'r2');
my $R3 = gen_key('EdDSA', kid => 'r3');

write_jwks("$d/rotate.jwks", $A, $C);
write_jwks("$d/refresh.jwks", $R1);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://rotate.test keys=%%TESTDIR%%/rotate.jwks
                 audience=https://fhir.test;
    welby_issuer https://refresh.test keys=%%TESTDIR%%/refresh.jwks
                 audience=https://fhir.test refresh=1s;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            add_header X-Reason $welby_reason always;
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

$t->run()->plan(18);

sub tok {
    my ($k, $iss) = @_;
    return jwt(key => $k, set => { iss => $iss, aud => $AUD });
}

# (status, reason code or '')
sub check {
    my ($tok) = @_;
    my $r = parse_response(http_req(uri => '/fhir/Patient/p1',
        headers => ["Authorization: Bearer $tok"]));
    return (0, 'no response') unless $r;
    my $j = $r->json;
    my $code = $j && eval { $j->{issue}[0]{details}{coding}[0]{code} };
    return ($r->status, $code // '');
}

sub result { my @r = check(@_); return "$r[0] $r[1]" }

# Rewrites refresh.jwks at once, in the mtime second of its last version
# as an editor's quick second save has it (the worker compares more than
# the mtime), and polls error.log, up to 10 s (refresh=1s), for the line
# that says the worker has read it: "keys reloaded" or "not reloaded".
sub refresh_keys {
    my ($content_cb, $want) = @_;
    my $path = "$d/refresh.jwks";
    my $from = length $t->read_file('error.log');
    my $mtime = (stat $path)[9];
    $content_cb->();
    utime($mtime, $mtime, $path) or die "utime $path: $!\n";

    my $re = qr{welby: issuer "\Q$REF\E": keys file "\Q$path\E" not }
        . qr{reloaded, old keys kept};
    $re = qr{welby: issuer "\Q$REF\E": keys reloaded from "\Q$path\E"}
        if $want eq 'reloaded';

    for (1 .. 200) {
        my ($line) = grep { /$re/ }
            split /\n/, substr($t->read_file('error.log'), $from);
        return $line if defined $line;
        sleep 0.05;
    }
    return undef;
}

###############################################################################
# rotation with reload

my ($tokA, $tokB, $tokC) = (tok($A, $ROT), tok($B, $ROT), tok($C, $ROT));

is(result($tokA), '200 ', 'before rotation: a token of key A accepted');
like(result($tokB), qr/^401 token_key$/,
    'before rotation: a token of key B (not yet published) refused, '
    . 'token_key');

# a client sends requests with key C's token through the whole reload
my $stop = "$d/client.stop";
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    my ($ok, $fail, @bad) = (0, 0);
    while (!-e $stop) {
        my $res = result($tokC);
        if ($res eq '200 ') { $ok++ } else { $fail++; push @bad, $res }
    }
    open my $fh, '>', "$d/client.result";
    print $fh "$ok $fail @bad[0 .. ($#bad < 4 ? $#bad : 4)]\n";
    close $fh;
    POSIX::_exit(0);    # not END: this process must not stop nginx
}

sleep 0.5;
write_jwks("$d/rotate.jwks", $B, $C);
ok($t->reload(), 'reload with the rotated JWKS (B and C) started new '
    . 'workers');
sleep 1;

open my $fh, '>', $stop;
close $fh;
waitpid($pid, 0);
my ($ok, $fail, @bad) = split ' ', $t->read_file('client.result');
ok(($ok // 0) > 20 && defined $fail && $fail == 0,
    "during the reload: $ok requests with a key of both files, none "
    . 'failed') or diag("ok $ok, failed $fail: @bad");

like(result($tokA), qr/^401 token_key$/,
    'after reload: the token of the removed key A refused, token_key');
is(result($tokB), '200 ', 'after reload: a token of the new key B accepted');
is(result($tokC), '200 ', 'after reload: the token of key C (kept) '
    . 'accepted');

# the same kid with new key material: the old token no longer verifies
write_jwks("$d/rotate.jwks", $A2, $C);
ok($t->reload(), 'reload with kid key-a bound to a new key');
like(result($tokA), qr/^401 token_signature$/,
    'after reload: a token of the old key-a material refused, '
    . 'token_signature');
is(result(tok($A2, $ROT)), '200 ',
    'after reload: a token of the new key-a material accepted');

###############################################################################
# refresh=1s without reload

my ($tokR1, $tokR2) = (tok($R1, $REF), tok($R2, $REF));

is(result($tokR1), '200 ', 'refresh: a token of the published key r1 '
    . 'accepted');

ok(refresh_keys(sub { write_jwks("$d/refresh.jwks", $R2) }, 'reloaded'),
    'refresh: the rotated file is reloaded without a reload of nginx');
is(result($tokR2), '200 ',
    'refresh: after rotating the file (no reload) a token of the new key '
    . 'r2 accepted');
like(result($tokR1), qr/^401 token_key$/,
    'refresh: the token of the removed key r1 refused, token_key');

# a broken file: the workers keep the keys they have
my $line = refresh_keys(
    sub { $t->write_file('refresh.jwks', '{"keys": [') }, 'refused');
like($line // '', qr/^\S+ \S+ \[error\] .*invalid JSON/,
    'refresh: error.log has an [error] line naming the broken file and '
    . 'the reason') or diag(join "\n", grep { /\[(?:error|warn)\]/ }
        split /\n/, $t->read_file('error.log'));
is(result($tokR2), '200 ',
    'refresh: with the broken file read, the old keys are kept (r2 still '
    . 'accepted)');

ok(refresh_keys(sub { write_jwks("$d/refresh.jwks", $R3) }, 'reloaded'),
    'refresh: the fixed file is reloaded, in the second of the broken one');
is(result(tok($R3, $REF)), '200 ',
    'refresh: a fixed file is picked up again (r3 accepted)');

###############################################################################
# The teardown check fails on any "[error] ... welby:" line, and this file
# provokes some on purpose: the broken-file lines asserted above.  Stop
# nginx, then move exactly those lines (the ones naming refresh.jwks) to
# expected-errors.log, so that every other line is still checked.

$t->stop();
my (@keep, @moved);
for my $line (split /\n/, $t->read_file('error.log')) {
    if ($line =~ /\[error\].*\bwelby: .*\Q$d\E\/refresh\.jwks/) {
        push @moved, $line;
    } else {
        push @keep, $line;
    }
}
$t->write_file('expected-errors.log', join("\n", @moved, ''));
$t->write_file('error.log', join("\n", @keep, ''));
