#!/usr/bin/perl

# welby_limit over time, through nginx: requests sent at controlled
# times, each expectation computed from the times they were actually
# sent and answered (the server decides at some instant in between; the
# tolerance is that interval, never a guess).  A burst and its refill,
# a rate over a second and a half of continuous requests, Retry-After
# kept to the second, the hourly and daily quotas at their windows' end.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(ceil floor);
use Time::HiRes qw(time sleep);
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_zone limits 1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_token off;
        welby_limit_headers on;

        location /burst/ {
            welby_limit name=burst zone=limits key=ip rate=2r/s burst=3;
            js_content echo.echo;
        }

        location /steady/ {
            welby_limit name=steady zone=limits key=ip rate=20r/s burst=19;
            js_content echo.echo;
        }

        location /retry/ {
            welby_limit name=retry zone=limits key=ip rate=1r/s;
            js_content echo.echo;
        }

        location /hourly/ {
            welby_limit name=q zone=limits key=ip rate=100r/s burst=100
                        hour=3;
            js_content echo.echo;
        }

        location /daily/ {
            welby_limit name=d zone=limits key=ip rate=100r/s burst=100
                        day=2;
            js_content echo.echo;
        }
    }
}
EOF

$t->run()->plan(18);

###############################################################################

# one request from a chosen address: (status, response, sent, answered)
sub send_at {
    my ($uri, $from) = @_;
    my $s = time();
    my $r = parse_response(http_req(uri => $uri, local => $from));
    return { status => $r ? $r->status : 0, r => $r, sent => $s,
        got => time() };
}

sub wait_until { my ($at) = @_; my $d = $at - time(); sleep $d if $d > 0 }

# [lo, hi] of a whole number of seconds the server computed as ceil(x)
# for some x in [a, b]
sub range_ok {
    my ($v, $a, $b) = @_;
    return defined $v && $v =~ /^\d+$/ && $v >= ceil($a) && $v <= ceil($b);
}

###############################################################################
# rate=2r/s burst=3: exactly 4 of a volley, then one each 500 ms

my @v = map { send_at('/burst/', '127.0.2.1') } 1 .. 8;
my $first = $v[0];

# one request is freed each 500 ms after the server charged the first
# (at an instant in [sent, got] of the first): a volley over before
# sent + 500 ms has exactly 4 pass, a slower one up to one more per 500 ms
my $pass = grep { $_->{status} == 200 } @v;
my $hi = 4 + floor(($v[-1]{got} - $first->{sent}) / 0.5);
my $ms = int(($v[-1]{got} - $first->{sent}) * 1000);
ok($pass >= 4 && $pass <= $hi && join(' ', map { $_->{status} } @v[0 .. 3])
    eq '200 200 200 200', "rate=2r/s burst=3: of a volley of 8 in $ms ms, "
    . "$pass pass, the first 4 and at most $hi");

my ($good, $checked) = (0, 0);

for my $k (1 .. 4) {
    # from got + 0.5k + 0.02 on, the kth is free for sure; the one after
    # it is not before the first's server time + 0.5(k+1): a step that
    # runs later says nothing, and neither do the ones after it
    wait_until($first->{got} + 0.5 * $k + 0.02);
    my $a = send_at('/burst/', '127.0.2.1');
    my $b = send_at('/burst/', '127.0.2.1');
    last unless $b->{got} < $first->{sent} + 0.5 * ($k + 1);
    $checked++;
    $good++ if $a->{status} == 200 && $b->{status} == 429;
}

ok($checked >= 1, "the refill was checked at $checked of 4 steps of 500 ms");
is($good, $checked, 'at each step exactly one more passes, the next not');

###############################################################################
# rate=20r/s burst=19 over 1.5 s of continuous requests

my (@s, $n);
my $start = time();
push @s, send_at('/steady/', '127.0.2.2') while time() < $start + 1.5;
$n = grep { $_->{status} == 200 } @s;

# 20 at once, then one per 50 ms of server time between the first and
# the last request; the burst absorbs the client's gaps, so each slot is
# taken (the last one perhaps not yet)
my $lo = 20 + floor(($s[-1]{sent} - $s[0]{got}) / 0.05);
$hi = 20 + floor(($s[-1]{got} - $s[0]{sent}) / 0.05);
ok($n >= $lo && $n <= $hi, "20r/s burst=19 for 1.5 s: $n of "
    . scalar(@s) . " passed, in [$lo, $hi]");
is(scalar(grep { $_->{status} != 200 && $_->{status} != 429 } @s), 0,
    'every other answer is a 429');

###############################################################################
# Retry-After is never early: a request sent then passes

my $r1 = send_at('/retry/', '127.0.2.3');
my $r2 = send_at('/retry/', '127.0.2.3');
is("$r1->{status} $r2->{status}", '200 429', 'rate=1r/s: the 2nd at once '
    . 'is refused');
my $ra = $r2->{r}->header('Retry-After');
ok(range_ok($ra, $r1->{sent} + 1 - $r2->{got}, $r1->{got} + 1 - $r2->{sent}),
    "its Retry-After $ra: until 1 s after the first, rounded up");
wait_until($r2->{got} + $ra);
is(send_at('/retry/', '127.0.2.3')->{status}, 200,
    'a request sent after Retry-After passes');

###############################################################################
# hour=3: the 4th is refused until the hour's end

# not across a boundary: wait for the next hour if this one ends soon
my $end = (floor(time() / 3600) + 1) * 3600;
wait_until($end + 0.05) if $end - time() < 10;
$end = (floor(time() / 3600) + 1) * 3600;

my @q = map { send_at('/hourly/', '127.0.2.4') } 1 .. 4;
is(join(' ', map { $_->{status} } @q), '200 200 200 429',
    'hour=3: 3 pass, the 4th is refused');
my ($tq) = ($q[2]{r}->header('RateLimit') // '') =~ /^"q\.hour";r=0;t=(\d+)$/;
ok(range_ok($tq, $end - $q[2]{got}, $end - $q[2]{sent}),
    'the 3rd: RateLimit "q.hour";r=0 and t until the hour\'s end');
is($q[0]{r}->header('RateLimit-Policy'), '"q.hour";q=3;w=3600',
    'the first already names the hour: RateLimit-Policy "q.hour";q=3;w=3600');
$ra = $q[3]{r}->header('Retry-After');
ok(range_ok($ra, $end - $q[3]{got}, $end - $q[3]{sent}),
    "the 4th: Retry-After $ra, until the hour's end");
is($q[3]{r}->header('RateLimit'), qq{"q.hour";r=0;t=$ra},
    'the 4th: RateLimit t equal to Retry-After');
is($q[3]{r}->header('RateLimit-Policy'), '"q.hour";q=3;w=3600',
    'the 4th: RateLimit-Policy of the hour');

###############################################################################
# day=2: refused until midnight UTC

$end = (floor(time() / 86400) + 1) * 86400;
wait_until($end + 0.05) if $end - time() < 10;
$end = (floor(time() / 86400) + 1) * 86400;

my @dq = map { send_at('/daily/', '127.0.2.5') } 1 .. 3;
is(join(' ', map { $_->{status} } @dq), '200 200 429',
    'day=2: 2 pass, the 3rd is refused');
$ra = $dq[2]{r}->header('Retry-After');
ok(range_ok($ra, $end - $dq[2]{got}, $end - $dq[2]{sent}),
    "its Retry-After $ra: until midnight UTC");
is($dq[2]{r}->header('RateLimit-Policy'), '"d.day";q=2;w=86400',
    'its RateLimit-Policy "d.day";q=2;w=86400');
is(send_at('/daily/', '127.0.2.6')->{status}, 200,
    'another address has its own day');
