#!/usr/bin/perl

# Enumeration detection (welby_enumeration): the distinct patients a
# subject (and a client) reached in the window, over a bound: the request
# that would take it past is refused 403 enumeration and adds nothing;
# patients already reached pass again (exactly, within exact=); the
# sketch past exact= refuses within its documented error; action=alert
# lets through with one alert record per window; the window ends;
# detect mode; two workers count together; nginx -t errors.

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

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

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
    welby_alert enumeration 1/1m;

    welby_zone enum 1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;
        keepalive_requests 1000;

        welby on;

        location /e/fhir/ {
            welby_fhir_base /e/fhir;
            welby_enumeration zone=enum patients=5/1m exact=5;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /s/fhir/ {
            welby_fhir_base /s/fhir;
            welby_enumeration zone=enum patients=40/1m exact=4;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /c/fhir/ {
            welby_fhir_base /c/fhir;
            welby_enumeration zone=enum patients=3/1m by=client_id;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /b/fhir/ {
            welby_fhir_base /b/fhir;
            welby_enumeration zone=enum patients=3/2m by=both;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /a/fhir/ {
            welby_fhir_base /a/fhir;
            welby_enumeration zone=enum patients=2/1m action=alert;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /x/fhir/ {
            welby_fhir_base /x/fhir;
            welby_enumeration zone=enum patients=2/1s;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /d/fhir/ {
            welby_mode detect;
            welby_fhir_base /d/fhir;
            welby_enumeration zone=enum patients=1/1m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /w/fhir/ {
            welby_fhir_base /w/fhir;
            welby_enumeration zone=enum patients=4/3m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
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

# a clinician's token reaching 100 patients (user/ scopes and the
# patients claim)
my @P = map { "p$_" } 1 .. 100;

sub token {
    my ($sub, $client) = @_;
    return jwt(key => $key, set => { iss => 'https://issuer.test',
        aud => 'https://fhir.test', sub => $sub, client_id => $client,
        scope => 'user/*.rs', patient => undef, patients => [@P] });
}

# the requests past a bound, refused or let through: what
# welby_detections_total{detector="enumeration"} must come to
my $DETECTED = 0;

sub read_patient {
    my ($base, $tok, $p) = @_;
    my $r = parse_response(http_req(uri => "$base/Patient/$p",
        headers => ["Authorization: Bearer $tok"]));
    $DETECTED++ if $r && ($r->reason_code // '') eq 'enumeration';
    return $r;
}

sub code { my ($r) = @_; return $r ? $r->status . ' ' . ($r->reason_code
    // '-') : 'no answer' }

sub codes { join ', ', map { code(read_patient(@_[0, 1], $_)) } @_[2 .. $#_] }

sub alerts {
    my ($key) = @_;
    return grep { $_->{alert} && $_->{alert}{event} eq 'enumeration'
            && defined $_->{alert}{key} && $_->{alert}{key} eq $key }
        map { eval { JSON::XS->new->decode($_) } || () }
        split /\n/, $t->read_file('audit.log');
}

###############################################################################
# the exact part: E patients pass, the E+1-th is refused

my $e = token('clin-e', 'app-e');

is(codes('/e/fhir', $e, qw(p1 p2 p3 p4 p5)), join(', ', ('200 -') x 5),
    'patients=5: five patients pass');
my $r = read_patient('/e/fhir', $e, 'p6');
is(code($r), '403 enumeration', 'the sixth is refused');
is(codes('/e/fhir', $e, qw(p1 p5 p3)), join(', ', ('200 -') x 3),
    'patients already reached pass again, after the refusal too');
is(code(read_patient('/e/fhir', $e, 'p7')), '403 enumeration',
    'another new one is refused');

my $rec = $t->audit_record($r ? $r->request_id : '-');
is($rec && $rec->{reason}, 'enumeration', 'the refusal\'s audit record');

my @al = alerts('clin-e');
is(scalar @al, 1, 'one alert record in the window, for two refusals');
is($al[0] && $al[0]{alert}{count}, 6, 'counting the patient it refused');
my $json = $al[0] ? JSON::XS->new->canonical->encode($al[0]) : '';
ok($json ne '' && $json !~ /"p\d+"|Patient/,
    'the alert names the subject, no patient');
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: alert enumeration: 6 in 60000 ms from clin-e/, 3),
    'and its [warn] line');
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: alert enumeration: 1 in 60000 ms/, 3),
    'welby_alert enumeration counted the refused request');

# another subject is counted apart
is(codes('/e/fhir', token('clin-e2', 'app-e'), qw(p6 p7 p8 p9 p10)),
    join(', ', ('200 -') x 5), 'another subject has its own five');

###############################################################################
# past exact=4, the sketch: patients=40 refuses the 41st distinct, or a
# few later where hashes collided (each collision lets one more pass: 5
# or more among 41 ids in 2048 bits have a probability of 4e-6)

my $s = token('clin-s', 'app-s');
my ($first, $passed) = (undef, 0);
for my $i (1 .. 60) {
    my $c = code(read_patient('/s/fhir', $s, "p$i"));
    if ($c eq '403 enumeration') { $first = $i; last }
    $passed++ if $c eq '200 -';
}
ok(defined $first && $first >= 41 && $first <= 46,
    'patients=40 exact=4: the first refusal after 40 to 45 patients')
    or diag('first refused: ' . ($first // 'none') . ", passed $passed");
is($passed, defined $first ? $first - 1 : -1, 'every one before it passed');
is(code(read_patient('/s/fhir', $s, 'p1')), '403 enumeration',
    'past the bound the bitmap cannot tell p1 was seen: refused too');
@al = alerts('clin-s');
is(scalar @al, 1, 'one alert record');
ok($al[0] && $al[0]{alert}{count} >= 41 && $al[0]{alert}{count} <= 46,
    'with the estimate, 41 to 46') or diag(explain($al[0]));

###############################################################################
# by=client_id: two subjects of one client add up

my ($c1, $c2) = (token('clin-c1', 'app-c'), token('clin-c2', 'app-c'));
is(codes('/c/fhir', $c1, qw(p1 p2)) . ', ' . codes('/c/fhir', $c2, 'p3'),
    join(', ', ('200 -') x 3), 'by=client_id: two subjects, three patients');
is(code(read_patient('/c/fhir', $c2, 'p4')), '403 enumeration',
    'the fourth of the client is refused');
is(code(read_patient('/c/fhir', token('clin-c3', 'app-other'), 'p4')),
    '200 -', 'another client is counted apart');
is(scalar alerts('app-c'), 1, 'the alert record names the client');

###############################################################################
# by=both: a request refused by one set is added to neither

my $bx = token('clin-b1', 'app-bx');
is(codes('/b/fhir', $bx, qw(p1 p2 p3)), join(', ', ('200 -') x 3),
    'by=both: a subject reaches three through client X');
my $b2x = token('clin-b2', 'app-bx');
is(code(read_patient('/b/fhir', $b2x, 'p4')), '403 enumeration',
    'another subject of client X: p4 is the client\'s fourth, refused');
is(codes('/b/fhir', token('clin-b2', 'app-by'), qw(p5 p6 p7)),
    join(', ', ('200 -') x 3),
    'that subject through client Y: three more pass (p4 was not added)');

###############################################################################
# action=alert: allowed, one alert record in the window

my $a = token('clin-a', 'app-a');
is(codes('/a/fhir', $a, qw(p1 p2 p3 p4)), join(', ', ('200 -') x 4),
    'action=alert, patients=2: the third and fourth pass');
$DETECTED += 2;
@al = alerts('clin-a');
is(scalar @al, 1, 'one alert record for both');
is($al[0] && $al[0]{alert}{count}, 3, 'at the third');

###############################################################################
# the window ends

my $x = token('clin-x', 'app-x');
my $start = time();
is(codes('/x/fhir', $x, qw(p1 p2 p3)), '200 -, 200 -, 403 enumeration',
    'patients=2/1s: the third is refused');
my $back;
my $deadline = time() + 5;
while (time() < $deadline) {
    if (code(read_patient('/x/fhir', $x, 'p3')) eq '200 -') {
        $back = time();     # answered, so it arrived after the window
        last;
    }
    sleep 0.05;
}
ok(defined $back && $back >= $start + 1,
    'after the 1 s window, the third passes (not before)')
    or diag("started $start, passed at " . ($back // 'never'));

# a record kept after its window is used again from zero: the first
# request after the window starts a new set (the old patients do not
# count), and the bound holds in it
my $y = token('clin-y', 'app-y');
is(codes('/x/fhir', $y, qw(p1 p2)), '200 -, 200 -',
    'patients=2/1s: two patients in a window');
my $after = time() + 1.1;     # the window began before this answer
sleep 0.02 while time() < $after;
is(codes('/x/fhir', $y, qw(p3 p4 p5)), '200 -, 200 -, 403 enumeration',
    'the first request after the window: its kept record starts afresh '
    . '(two new patients pass, the third is refused)');

###############################################################################
# detect mode

my $dt = token('clin-d', 'app-d');
read_patient('/d/fhir', $dt, 'p1');
$r = read_patient('/d/fhir', $dt, 'p2');
is(code($r), '200 -', 'welby_mode detect: past the bound, allowed');
$DETECTED++;
my $id = $r ? $r->request_id : '-';
ok(scalar $t->wait_for_log(
    qr/\[warn\] .*welby: detect id:\Q$id\E step:enumeration /
    . qr/reason:enumeration/, 3), 'with its detect line');

###############################################################################
# two workers count together

sub ka_open {
    return IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(8080), Proto => 'tcp', Timeout => 5);
}

sub ka_get {
    my ($sock, $tok, $p) = @_;
    my $req = "GET /w/fhir/Patient/$p HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $tok\r\n\r\n";
    syswrite($sock, $req) or return undef;
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
    $DETECTED++ if $r && ($r->reason_code // '') eq 'enumeration';
    return $r;
}

sub worker_of {
    my ($rr) = @_;
    my $rid = $rr ? $rr->request_id : return '';
    my @l = $t->wait_for_log(qr/^\S+ \S+ \[\w+\] (\d+)#\d+: .*\Q$rid\E/, 3);
    return $l[0] && $l[0] =~ /\] (\d+)#/ ? $1 : '';
}

my $wt = token('clin-w', 'app-w');
my (%conn, @extra);
for (1 .. 40) {
    my $sock = ka_open() or last;
    my $w = worker_of(ka_get($sock, $wt, 'p1'));
    if ($w && !$conn{$w}) { $conn{$w} = $sock } else { push @extra, $sock }
    last if keys %conn == 2;
}
my @w = sort keys %conn;
is(scalar @w, 2, 'two keep-alive connections, served by two workers');
my @got = map { code(ka_get($conn{$w[$_ % 2]}, $wt, "p" . ($_ + 2))) }
    0 .. 3;
is(join(', ', @got), '200 -, 200 -, 200 -, 403 enumeration',
    'patients=4: p1 then p2..p5 by alternating workers, the fifth refused');
close $_ for values %conn, @extra;

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

my ($mok, $mdet, $mal, $mrec) = metrics_match('enumeration', $DETECTED);
ok($mok && $mdet == $DETECTED,
    "welby_detections_total{detector=\"enumeration\"}: the $DETECTED requests past a bound, refused or let through")
    or diag("detections $mdet, wanted $DETECTED");
ok($mok && $mal == $mrec,
    "welby_alerts_total{event=\"enumeration\"}: the $mrec alert records")
    or diag("alerts $mal, records $mrec");

###############################################################################
# nginx -t

sub conf_error {
    my ($directive) = @_;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    welby_zone enum 1m;
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
    ['welby_enumeration patients=5/1m;',
        qr/needs zone= and patients=/, 'no zone='],
    ['welby_enumeration zone=enum;',
        qr/needs zone= and patients=/, 'no patients='],
    ['welby_enumeration zone=enum patients=0/1m;',
        qr/invalid parameter "patients=0\/1m"/, 'patients=0'],
    ['welby_enumeration zone=enum patients=1001/1m;',
        qr/count of 1 to 1000 \(the distinct count's accurate range\)/,
        'a bound beyond the sketch\'s accurate range'],
    ['welby_enumeration zone=enum patients=5;',
        qr/invalid parameter "patients=5"/, 'no window'],
    ['welby_enumeration zone=enum patients=5/1m exact=0;',
        qr/exact= must be 1 to 32/, 'exact=0'],
    ['welby_enumeration zone=enum patients=5/1m exact=33;',
        qr/exact= must be 1 to 32/, 'exact above 32'],
    ['welby_enumeration zone=enum patients=5/1m by=patient;',
        qr/invalid parameter "by=patient"/, 'by= something else'],
    ['welby_enumeration zone=enum patients=5/1m action=block;',
        qr/invalid parameter "action=block"/, 'action= something else'],
    ['welby_enumeration zone=nozone patients=5/1m;',
        qr/nozone/, 'a zone never declared'],
    ['welby_enumeration off; welby_enumeration off;',
        qr/is duplicate/, 'twice in a location'],
);

for my $case (@BAD) {
    my ($directive, $re, $what) = @$case;
    like(conf_error($directive), $re, "nginx -t: $what");
}

$t->done_testing();
