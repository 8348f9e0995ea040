#!/usr/bin/perl

# Impossible travel (welby_travel): the same subject (or token) from two
# countries within the window: 403 impossible_travel, and the home country
# stays; after the window, allowed; an unknown country is never evidence;
# by=jti and by=both (a request refused by one key moves neither home);
# action=alert with one alert record per window; detect mode; two
# workers; nginx -t errors.  Countries from t/lib/Welby/MMDB.pm:
# 127.0.1.0/24 JP, 127.0.2.0/24 US, 127.0.3.0/24 DE, 127.0.9.0/24 unknown.

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
use MIME::Base64 ();

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);
Welby::MMDB::country_db("$d/country.mmdb");

$t->write_file("html/$_/ok", "ok\n") for qw(long short jti both alert detect);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_token_cache zone=tokens:1m;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_alert impossible_travel 1/1m;

    welby_zone travel 1m;
    welby_geoip2 %%TESTDIR%%/country.mmdb;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        root %%TESTDIR%%/html;
        keepalive_requests 1000;

        welby on;

        location /long/ {
            welby_travel zone=travel window=1m;
        }

        location /short/ {
            welby_travel zone=travel window=1s;
        }

        location /jti/ {
            welby_travel zone=travel window=1m by=jti;
        }

        location /both/ {
            welby_travel zone=travel window=2m by=both;
        }

        location /alert/ {
            welby_travel zone=travel window=3m action=alert;
        }

        location /detect/ {
            welby_mode detect;
            welby_travel zone=travel window=4m;
        }
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

my ($JP, $JP2, $US, $DE, $UNKNOWN) =
    ('127.0.1.5', '127.0.1.6', '127.0.2.5', '127.0.3.5', '127.0.9.5');

sub token {
    my ($sub, %more) = @_;
    return jwt(key => $key, set => { iss => 'https://issuer.test',
        aud => 'https://fhir.test', sub => $sub, %more });
}

# the requests from a second country, refused or let through: what
# welby_detections_total{detector="impossible_travel"} must come to
my $DETECTED = 0;

sub get {
    my ($uri, $from, $tok) = @_;
    my $r = parse_response(http_req(uri => $uri, local => $from,
        headers => ["Authorization: Bearer $tok"]));
    $DETECTED++ if $r && ($r->reason_code // '') eq 'impossible_travel';
    return $r;
}

sub code { my ($r) = @_; return $r ? $r->status . ' ' . ($r->reason_code
    // '-') : 'no answer' }

sub path { join ', ', map { code(get($_[0], $_, $_[1])) } @_[2 .. $#_] }

sub alerts {
    my ($k) = @_;
    return grep { $_->{alert} && $_->{alert}{event} eq 'impossible_travel'
            && defined $_->{alert}{key} && $_->{alert}{key} eq $k }
        map { eval { JSON::XS->new->decode($_) } || () }
        split /\n/, $t->read_file('audit.log');
}

###############################################################################
# two countries within the window; the home stays

my $alice = token('alice');
is(code(get('/long/ok', $JP, $alice)), '200 -', 'alice from Japan');
is(code(get('/long/ok', $JP2, $alice)), '200 -',
    'another address of the same country');
my $r = get('/long/ok', $US, $alice);
is(code($r), '403 impossible_travel', 'then from the US: refused');
is(path('/long/ok', $alice, $JP, $US, $DE, $JP),
    '200 -, 403 impossible_travel, 403 impossible_travel, 200 -',
    'Japan stays the home: it passes, the US and Germany are refused');

my $rec = $t->audit_record($r ? $r->request_id : '-');
is($rec && $rec->{reason}, 'impossible_travel', 'the refusal\'s audit record');
my @al = alerts('alice');
is(scalar @al, 1, 'one alert record in the window, for three refusals');
is($al[0] && $al[0]{alert}{count}, 2, 'two countries');
my $json = $al[0] ? JSON::XS->new->encode($al[0]) : '';
ok($json ne '' && $json !~ /"(?:JP|US|DE)"|127\.0\./,
    'it names the subject, no country, no address');
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: alert impossible_travel: 2 in 60000 ms from alice/,
    3), 'and its [warn] line');
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: alert impossible_travel: 1 in 60000 ms/, 3),
    'welby_alert impossible_travel counted the refused request');

###############################################################################
# an unknown country is never evidence

my $bob = token('bob');
is(path('/long/ok', $bob, $UNKNOWN, $JP, $UNKNOWN, $US),
    '200 -, 200 -, 200 -, 403 impossible_travel',
    'unknown, Japan, unknown, the US: unknown neither made nor moved '
    . 'the home');

###############################################################################
# after the window

my $carol = token('carol');
my $b0 = time();
is(code(get('/short/ok', $JP, $carol)), '200 -', 'window=1s: Japan');
is(code(get('/short/ok', $US, $carol)), '403 impossible_travel',
    'the US within the second: refused');
my $back;
my $deadline = time() + 5;
while (time() < $deadline) {
    if (code(get('/short/ok', $US, $carol)) eq '200 -') {
        $back = time();     # answered, so it arrived after the window
        last;
    }
    sleep 0.05;
}
ok(defined $back && $back >= $b0 + 1,
    'the refused tries moved nothing: the US passes once Japan is 1 s quiet')
    or diag("Japan at $b0, the US allowed at " . ($back // 'never'));
is(code(get('/short/ok', $JP, $carol)), '403 impossible_travel',
    'now the US is the home, and Japan within the second is refused');

###############################################################################
# by=jti: the same token

my $tok1 = token('dave');
is(path('/jti/ok', $tok1, $JP, $US),
    '200 -, 403 impossible_travel', 'by=jti: one token, Japan then the US');
is(code(get('/jti/ok', $US, token('dave'))), '200 -',
    'another token of the same subject from the US passes');
is(scalar alerts(JSON::XS->new->decode(
    MIME::Base64::decode_base64url((split /\./, $tok1)[1]))->{jti}), 1,
    'the alert record names the jti');

###############################################################################
# by=both: a request refused by the subject moves no token's home

my ($e1, $e2) = (token('erin'), token('erin'));
is(code(get('/both/ok', $JP, $e1)), '200 -', 'by=both: erin from Japan');
is(code(get('/both/ok', $US, $e2)), '403 impossible_travel',
    'a second token of hers from the US: refused by the subject');
is(code(get('/both/ok', $JP, $e2)), '200 -',
    'that token from Japan passes: the refusal made the US no home of it');

###############################################################################
# action=alert

my $fay = token('fay');
is(path('/alert/ok', $fay, $JP, $US, $US, $JP),
    '200 -, 200 -, 200 -, 200 -', 'action=alert: all pass');
$DETECTED += 2;     # the two from the US
@al = alerts('fay');
is(scalar @al, 1, 'one alert record in the window');

###############################################################################
# detect mode

my $gus = token('gus');
get('/detect/ok', $JP, $gus);
$r = get('/detect/ok', $US, $gus);
is(code($r), '200 -', 'welby_mode detect: travel, allowed');
$DETECTED++;
my $id = $r ? $r->request_id : '-';
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: detect id:\Q$id\E step:travel /
    . qr/reason:impossible_travel/, 3), 'with its detect line');

###############################################################################
# two workers: Japan through one, the US through the other

sub ka_open {
    my ($from) = @_;
    return IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(8080), LocalHost => $from, Proto => 'tcp',
        Timeout => 5);
}

sub ka_get {
    my ($sock, $tok) = @_;
    syswrite($sock, "GET /long/ok HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $tok\r\n\r\n") or return undef;
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        sysread($sock, $buf, 65536, length $buf) or return undef;
    }
    my $head = substr($buf, 0, index($buf, "\r\n\r\n"));
    my ($len) = $head =~ /\r\nContent-Length: (\d+)/i;
    my $want = length($head) + 4 + ($len // 0);
    while (length $buf < $want) {
        sysread($sock, $buf, 65536, length $buf) or return undef;
    }
    my $r = parse_response($buf);
    $DETECTED++ if $r && ($r->reason_code // '') eq 'impossible_travel';
    return $r;
}

sub worker_of {
    my ($rr) = @_;
    my $rid = $rr ? $rr->request_id : return '';
    my @l = $t->wait_for_log(qr/^\S+ \S+ \[\w+\] (\d+)#\d+: .*\Q$rid\E/, 3);
    return $l[0] && $l[0] =~ /\] (\d+)#/ ? $1 : '';
}

# a warm-up token per connection, so that no travel is counted before
my ($ja, $wa, $us, $wu, @extra);
for (1 .. 40) {
    my $s = ka_open('127.0.1.8') or last;
    $wa = worker_of(ka_get($s, token('warm-jp')));
    if ($wa) { $ja = $s; last }
}
for (1 .. 40) {
    my $s = ka_open('127.0.2.8') or last;
    $wu = worker_of(ka_get($s, token('warm-us')));
    if ($wu && $wa && $wu ne $wa) { $us = $s; last }
    push @extra, $s;
}
ok($ja && $us, 'a Japanese and a US connection, served by two workers');

my $hal = token('hal');
is(join(', ', map { code($_) } ka_get($ja, $hal), ka_get($us, $hal)),
    '200 -, 403 impossible_travel',
    'Japan through one worker, the US through the other: refused');
close $_ for grep { $_ } $ja, $us, @extra;

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

my ($mok, $mdet, $mal, $mrec) = metrics_match('impossible_travel', $DETECTED);
ok($mok && $mdet == $DETECTED,
    "welby_detections_total{detector=\"impossible_travel\"}: the $DETECTED requests from a second country, refused or let through")
    or diag("detections $mdet, wanted $DETECTED");
ok($mok && $mal == $mrec,
    "welby_alerts_total{event=\"impossible_travel\"}: the $mrec alert records")
    or diag("alerts $mal, records $mrec");

###############################################################################
# nginx -t

sub conf_error {
    my ($directive, $geo) = @_;
    $geo = $geo ? "welby_geoip2 $d/country.mmdb;" : '';
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    welby_zone travel 1m;
    $geo
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
    ['welby_travel window=1m;', 1, qr/needs zone= and window=/, 'no zone='],
    ['welby_travel zone=travel;', 1, qr/needs zone= and window=/,
        'no window='],
    ['welby_travel zone=travel window=0;', 1,
        qr/invalid parameter "window=0"/, 'window=0'],
    ['welby_travel zone=travel window=1m by=client_id;', 1,
        qr/invalid parameter "by=client_id"/, 'by= something else'],
    ['welby_travel zone=travel window=1m action=block;', 1,
        qr/invalid parameter "action=block"/, 'action= something else'],
    ['welby_travel zone=nozone window=1m;', 1, qr/nozone/,
        'a zone never declared'],
    ['welby_travel zone=travel window=1m;', 0,
        qr/"welby_travel" in \S+:\d+ needs "welby_geoip2"/,
        'no welby_geoip2'],
    ['welby_travel off; welby_travel off;', 1, qr/is duplicate/,
        'twice in a location'],
);

for my $case (@BAD) {
    my ($directive, $geo, $re, $what) = @$case;
    like(conf_error($directive, $geo), $re, "nginx -t: $what");
}

$t->done_testing();
