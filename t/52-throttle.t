#!/usr/bin/perl

# Auth-failure throttling (welby_auth_throttle): N failed token
# validations from an address within the window ban it, 429
# auth_throttled with Retry-After, before its token is looked at; each
# further ban twice as long up to max_ban, from the first again after a
# quiet max_ban; counted by two workers together, once per request
# whatever redirects follow; detect modes; the ban's one alert record;
# the directive's nginx -t errors.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use JSON::XS ();
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);
use Welby::Prom qw(prom_parse prom_value);
use Welby::JWT qw(gen_key jwt write_jwks);
use Welby::MMDB;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
my $other = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

# 127.0.1.0/24 is AS64501, 127.0.2.0/24 AS64502 (t/lib/Welby/MMDB.pm)
Welby::MMDB::country_db("$d/country.mmdb");
Welby::MMDB::asn_db("$d/asn.mmdb");

$t->write_file("html/$_/ok", "ok\n") for qw(t g w detect dry r off asn);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_alert auth_throttled 1/1m;

    welby_zone threat 1m;
    welby_geoip2 %%TESTDIR%%/country.mmdb asn=%%TESTDIR%%/asn.mmdb;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        root %%TESTDIR%%/html;
        keepalive_requests 1000;

        welby on;
        welby_auth_throttle zone=threat failures=3/1m ban=1s max_ban=2s;

        location /t/ { }

        # short bans: their lengths are read from the notice line
        location /g/ {
            welby_auth_throttle zone=threat failures=2/1m ban=200ms
                                max_ban=500ms;
        }

        location /w/ {
            welby_auth_throttle zone=threat failures=3/1s ban=1s;
        }

        location /detect/ {
            welby_mode detect;
        }

        location /dry/ {
            welby_auth_throttle zone=threat failures=2/1m ban=10s
                                mode=detect;
        }

        # a failure in detect mode, then again after the redirect
        location /r/ {
            welby_mode detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /t/ok;
        }

        location /off/ {
            welby_auth_throttle off;
        }

        location /asn/ {
            welby_auth_throttle zone=threat failures=10/1m ban=1s
                                asn=3/1m;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { return 404; }
    }

    server {
        listen 127.0.0.1:%%PORT_8099%%;
        location = /metrics { welby_metrics; }
    }
}
EOF

{
    my $conf = $t->read_file('nginx.conf');
    $conf =~ s/^worker_processes 1;$/worker_processes 2;/m
        or die "no worker_processes line in the test globals\n";
    $t->write_file('nginx.conf', $conf);
}

$t->run();

my %claims = (iss => 'https://issuer.test', aud => 'https://fhir.test');
my $good = jwt(key => $key, set => { %claims, sub => 'nurse-52' });
my $bad = jwt(key => $other, set => { %claims, sub => 'nurse-52' });

# the requests a ban refused, or a detect mode let through: what
# welby_detections_total{detector="auth_throttled"} must come to
my $DETECTED = 0;

sub get {
    my ($uri, $from, $token) = @_;
    my $r = parse_response(http_req(uri => $uri, local => $from,
        headers => [defined $token ? "Authorization: Bearer $token" : ()]));
    $DETECTED++ if $r && $r->status == 429;
    return $r;
}

sub code { my ($r) = @_; return $r ? $r->status . ' ' . ($r->reason_code
    // '-') : 'no answer' }

# Fails $n times from $from; returns the time just before the last one
# was sent and just after it was answered (the ban begins in between).
sub fail_n {
    my ($uri, $from, $n) = @_;
    my ($before, $after);
    for (1 .. $n) {
        $before = time();
        my $r = get($uri, $from, $bad);
        $after = time();
        return () unless $r && $r->status == 401;
    }
    return ($before, $after);
}

# Polls with a valid token until the ban is over: the time the first
# allowed request was answered (it arrived before, so no sooner than the
# ban's end), or undef at the deadline.
sub until_allowed {
    my ($uri, $from, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (time() < $deadline) {
        my $r = get($uri, $from, $good);
        return time() if $r && $r->status == 200;
        return undef unless $r && $r->status == 429;
        sleep 0.05;
    }
    return undef;
}

sub alerts {
    my ($key) = @_;
    return grep { $_->{alert} && $_->{alert}{event} eq 'auth_throttled'
            && defined $_->{alert}{key} && $_->{alert}{key} eq $key }
        map { eval { JSON::XS->new->decode($_) } || () }
        split /\n/, $t->read_file('audit.log');
}

###############################################################################
# the bound, one below it, and what is not a failure

my $A = '127.0.5.1';

is(code(get('/t/ok', $A, $bad)), '401 token_signature', 'a bad token: 401');
is(code(get('/t/ok', $A, $bad)), '401 token_signature', 'a second: 401');
is(code(get('/t/ok', $A, $good)), '200 -',
    'two failures of three: a valid token passes');
is(code(get('/t/ok', $A, undef)), '401 token_missing',
    'no token: 401, not a failure');
is(code(get('/t/ok', $A, $good)), '200 -',
    'still two failures: no token counted nothing, the success reset nothing');

my ($b1, $a1) = fail_n('/t/ok', $A, 1);
my $r = get('/t/ok', $A, $good);
is(code($r), '429 auth_throttled',
    'the third failure bans: a valid token is refused');
is($r && $r->header('Retry-After'), '1', 'Retry-After: the 1 s ban');
is($r && $r->json && $r->json->{issue}[0]{code}, 'throttled',
    'the OperationOutcome says throttled');

# the banned request never reached the token step
my $id = $r ? $r->request_id : '-';
my $log = $t->read_file('error.log');
ok($log =~ /welby: step:auth_throttle id:\Q$id\E/
    && $log !~ /welby: step:token id:\Q$id\E/,
    'the banned request stopped before the token step');

is(code(get('/off/ok', $A, $good)), '200 -',
    'welby_auth_throttle off: a location that does not throttle');

my $rec = $t->audit_record($id);
is($rec && $rec->{reason}, 'auth_throttled', 'its audit record says so');

my @al = alerts($A);
is(scalar @al, 1, 'one alert record for the ban');
is($al[0] && $al[0]{alert}{count}, 3, 'at the third failure');

ok(scalar $t->wait_for_log(qr/\[notice\] .*welby: auth_throttle bans \Q$A\E /
    . qr/for 1000 ms \(ban 1\)/, 1), 'the ban at notice, with its length');

ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: alert auth_throttled: 1 in 60000 ms/, 3),
    'welby_alert auth_throttled counted the banned request');

# expiry: not before the ban's second, and by a deadline
my $back = until_allowed('/t/ok', $A, 5);
ok(defined $back && $back >= $b1 + 1, 'the ban ends, not before 1 s')
    or diag("ban began in [$b1, $a1], allowed at " . ($back // 'never'));

# the second ban is longer
my ($b2, $a2) = fail_n('/t/ok', $A, 3);
$r = get('/t/ok', $A, $good);
is($r && $r->header('Retry-After'), '2', 'the second ban: Retry-After 2');
$back = until_allowed('/t/ok', $A, 6);
ok(defined $back && $back >= $b2 + 2, 'it ends, not before 2 s')
    or diag("ban began in [$b2, $a2], allowed at " . ($back // 'never'));
is(scalar alerts($A), 2, 'each ban has its alert record');

###############################################################################
# growth to max_ban and decay after a quiet max_ban (lengths from the log)

my $G = '127.0.5.2';

# the length of the ban that began after $from bytes of error.log, and
# its number
sub ban_line {
    my ($from) = @_;
    my ($len, $n) = (-1, -1);
    $t->wait_for_file('error.log', sub {
        substr($_[0], $from)
            =~ /welby: auth_throttle bans \Q$G\E for (\d+) ms \(ban (\d+)\)/
            or return 0;
        ($len, $n) = ($1, $2);
        return 1;
    }, 3);
    return ($len, $n);
}

my @ends;
for my $n (1 .. 3) {
    my $from = length $t->read_file('error.log');
    my ($bb, $aa) = fail_n('/g/ok', $G, 2);
    my ($ms, $num) = ban_line($from);
    my $len = $ms / 1000;
    my $back = until_allowed('/g/ok', $G, 3);
    push @ends, [$aa + $len, $len, $back && $back >= $bb + $len, $num];
}
is(join(' ', map { "$_->[1]/$_->[3]" } @ends), '0.2/1 0.4/2 0.5/3',
    'bans 1, 2, 3 of 200, 400, then 500 ms (max_ban, not 800)');
ok(!grep({ !$_->[2] } @ends), 'none ended early');

# quiet for max_ban after the last ban's end: the next is the first again
sleep 0.01 while time() < $ends[-1][0] + 0.5 + 0.05;
my $from = length $t->read_file('error.log');
fail_n('/g/ok', $G, 2);
is(join('/', ban_line($from)), '200/1',
    'after a quiet 500 ms (the failures still in the 1 min window): '
    . 'a 200 ms ban, number 1 again');

###############################################################################
# the window slides: failures further apart than it never ban

# failures=3/1s: at 0, 0.55 and past 1 s: the last two are within the
# window, the first is not
my $W = '127.0.5.3';
my ($wb, $wa) = fail_n('/w/ok', $W, 1);
sleep 0.01 while time() < $wa + 0.55;
fail_n('/w/ok', $W, 1);
sleep 0.01 while time() < $wa + 1.05;
fail_n('/w/ok', $W, 1);
is(code(get('/w/ok', $W, $good)), '200 -',
    'failures=3/1s: three failures over more than 1 s do not ban');
fail_n('/w/ok', $W, 1);
is(code(get('/w/ok', $W, $good)), '429 auth_throttled',
    'a fourth, with the two before it within 1 s, bans');

###############################################################################
# two workers count together: failures on two connections pinned to
# different workers ban the address on both

my $K = '127.0.5.4';

sub ka_open {
    return IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(8080), LocalHost => $K, Proto => 'tcp',
        Timeout => 5);
}

sub ka_get {
    my ($s, $token) = @_;
    my $req = "GET /t/ok HTTP/1.1\r\nHost: localhost\r\n"
        . ($token ? "Authorization: Bearer $token\r\n" : '') . "\r\n";
    syswrite($s, $req) or return undef;
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        sysread($s, $buf, 65536, length $buf) or return undef;
    }
    my ($len) = $buf =~ /\r\nContent-Length: (\d+)/i;
    my $want = index($buf, "\r\n\r\n") + 4 + ($len // 0);
    while (length $buf < $want) {
        sysread($s, $buf, 65536, length $buf) or return undef;
    }
    my $r = parse_response($buf);
    $DETECTED++ if $r && $r->status == 429;
    return $r;
}

sub worker_of {
    my ($r) = @_;
    my $id = $r ? $r->request_id : return '';
    my @l = $t->wait_for_log(qr/^\S+ \S+ \[\w+\] (\d+)#\d+: .*\Q$id\E/, 3);
    return $l[0] && $l[0] =~ /\] (\d+)#/ ? $1 : '';
}

my (%conn, @extra);
for (1 .. 40) {
    my $s = ka_open() or last;
    my $w = worker_of(ka_get($s, $good));
    if ($w && !$conn{$w}) { $conn{$w} = $s } else { push @extra, $s }
    last if keys %conn == 2;
}
my @w = sort keys %conn;
is(scalar @w, 2, 'two keep-alive connections, served by two workers');

my @seen = map { worker_of(ka_get($conn{$w[$_ % 2]}, $bad)) } 0 .. 2;
is(join(' ', map { $_ eq $w[0] ? 'A' : $_ eq $w[1] ? 'B' : '?' } @seen),
    'A B A', 'three failures, by worker A, B, A');
is(join(' ', map { code(ka_get($conn{$_}, $good)) } @w),
    '429 auth_throttled 429 auth_throttled',
    'the address is banned in both workers');
close $_ for values %conn, @extra;

###############################################################################
# per ASN: two addresses of AS64501 fail three times together, and the
# network is banned, its addresses that never failed too

is(code(get('/asn/ok', '127.0.1.5', $bad)) . ', '
    . code(get('/asn/ok', '127.0.1.5', $bad)),
    '401 token_signature, 401 token_signature', 'two failures from .1.5');
is(code(get('/asn/ok', '127.0.1.6', $good)), '200 -',
    'asn=3/1m: two failures of AS64501, its other address passes');
is(code(get('/asn/ok', '127.0.1.6', $bad)), '401 token_signature',
    'the third failure of the network, from .1.6');
$r = get('/asn/ok', '127.0.1.7', $good);
is(code($r), '429 auth_throttled',
    'AS64501 is banned: .1.7, which never failed, is refused');
is($r && $r->header('Retry-After'), '1', 'with the ban\'s Retry-After');
is(code(get('/asn/ok', '127.0.2.5', $good)), '200 -',
    'an address of AS64502 passes');
is(scalar alerts('AS64501'), 1, 'the ban\'s alert record names the ASN');
is(scalar alerts('127.0.1.5') + scalar alerts('127.0.1.6'), 0,
    'no address reached its own ten');

###############################################################################
# detect modes, and a failure counted once across a redirect

my $D = '127.0.5.5';
fail_n('/t/ok', $D, 3);
$r = get('/detect/ok', $D, $good);
is(code($r), '200 -', 'welby_mode detect: a banned address passes');
$DETECTED++;
ok(!($r && defined $r->header('Retry-After')), 'with no Retry-After');
$id = $r ? $r->request_id : '-';
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: detect id:\Q$id\E step:auth_throttle /
    . qr/reason:auth_throttled/, 3), 'and its detect line');

my $Y = '127.0.5.6';
fail_n('/dry/ok', $Y, 2);
$r = get('/dry/ok', $Y, $good);
is(code($r), '200 -', 'mode=detect: the ban is counted, nothing refused');
$DETECTED++;
$id = $r ? $r->request_id : '-';
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: detect id:\Q$id\E step:auth_throttle /, 3),
    'its detect line');
is(scalar alerts($Y), 1, 'and the ban its alert record');

# /r/ fails in detect mode, and again in /t/ after the error_page
my $R = '127.0.5.7';
is(code(get('/r/x', $R, $bad)), '401 token_signature',
    'a failure, and again after a redirect');
is(code(get('/r/x', $R, $bad)), '401 token_signature', 'twice');
is(code(get('/t/ok', $R, $good)), '200 -',
    'two requests, two failures (not four): no ban yet');
fail_n('/t/ok', $R, 1);
is(code(get('/t/ok', $R, $good)), '429 auth_throttled', 'the third bans');

###############################################################################
# the metrics: every request that found something, once; every alert record

sub metrics_match {
    my ($detector, $want) = @_;
    my ($det, $al, $records) = (-1, -1, 0);
    my $ok = $t->wait_for(sub {
        my $m = parse_response(http_req(uri => '/metrics',
            port => $t->port(8099)));
        my $p = prom_parse($m ? $m->body : '');
        $det = prom_value($p, 'welby_detections_total',
            detector => $detector) // -1;
        $al = prom_value($p, 'welby_alerts_total', event => $detector) // -1;
        $records = grep { $_->{alert} && $_->{alert}{event} eq $detector }
            map { eval { JSON::XS->new->decode($_) } || () }
            split /\n/, $t->read_file('audit.log');
        return $det == $want && $al == $records;
    });
    return ($ok, $det, $al, $records);
}

my ($mok, $mdet, $mal, $mrec) = metrics_match('auth_throttled', $DETECTED);
ok($mok && $mdet == $DETECTED,
    "welby_detections_total{detector=\"auth_throttled\"}: the $DETECTED requests a ban refused or a detect mode let through")
    or diag("detections $mdet, wanted $DETECTED");
ok($mok && $mal == $mrec,
    "welby_alerts_total{event=\"auth_throttled\"}: the $mrec alert records")
    or diag("alerts $mal, records $mrec");

###############################################################################
# nginx -t

sub conf_error {
    my ($directive) = @_;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    welby_zone threat 1m;
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        location / { welby on; $directive }
    }
}
EOF
    my ($code, $out) = $t->test_config('bad.conf');
    return $code ? $out : '';
}

my @BAD = (
    ['welby_auth_throttle failures=3/1m ban=1s;',
        qr/needs zone=, failures= and ban=/, 'no zone='],
    ['welby_auth_throttle zone=threat ban=1s;',
        qr/needs zone=, failures= and ban=/, 'no failures='],
    ['welby_auth_throttle zone=threat failures=3/1m;',
        qr/needs zone=, failures= and ban=/, 'no ban='],
    ['welby_auth_throttle zone=threat failures=0/1m ban=1s;',
        qr/invalid parameter "failures=0\/1m"/, 'failures=0'],
    ['welby_auth_throttle zone=threat failures=251/1m ban=1s;',
        qr/count of 1 to 250/, "failures above 250"],
    ['welby_auth_throttle zone=threat failures=3 ban=1s;',
        qr/invalid parameter "failures=3"/, 'no window'],
    ['welby_auth_throttle zone=threat failures=3/0 ban=1s;',
        qr/invalid parameter "failures=3\/0"/, 'a window of 0'],
    ['welby_auth_throttle zone=threat failures=3/1m ban=x;',
        qr/invalid parameter "ban=x"/, 'a ban that is no time'],
    ['welby_auth_throttle zone=threat failures=3/1m ban=1m max_ban=1s;',
        qr/max_ban= must not be shorter than ban=/, 'max_ban below ban'],
    ['welby_auth_throttle zone=threat failures=3/1m ban=1s mode=dry;',
        qr/invalid parameter "mode=dry"/, 'an unknown parameter'],
    ['welby_auth_throttle zone=nozone failures=3/1m ban=1s;',
        qr/nozone/, 'a zone never declared'],
    ['welby_auth_throttle off; welby_auth_throttle off;',
        qr/is duplicate/, 'twice in a location'],
    ['welby_auth_throttle zone=threat failures=3/1m ban=1s asn=5/1m;',
        qr/"welby_auth_throttle \.\.\. asn=" in \S+:\d+ needs "welby_geoip2 \.\.\. asn="/,
        'asn= without welby_geoip2'],
    ['welby_auth_throttle zone=threat failures=3/1m ban=1s asn=0/1m;',
        qr/invalid parameter "asn=0\/1m"/, 'asn=0'],
);

for my $case (@BAD) {
    my ($directive, $re, $what) = @$case;
    like(conf_error($directive), $re, "nginx -t: $what");
}

$t->done_testing();
