#!/usr/bin/perl

# welby_limit through nginx with 2 workers: the address limit before the
# token step (a flood without tokens never reaches it), limits by subject
# and by patient after the policy, the RateLimit fields and Retry-After,
# two rules where a refused request charges neither, a rule name shared by
# two locations, inheritance, an internal redirect charged once, a volley
# over many connections counted by both workers together, detect modes,
# and each refusal's audit record.  The rates here are per minute, so no
# request is freed while a check runs; exactness in time: t/48-limit-time.t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use IO::Select;
use POSIX ();
use JSON::PP;
use Time::HiRes qw(time);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);
my $key2 = gen_key('ES256', kid => 'k2');
write_jwks("$d/keys2.jwks", $key2);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_issuer https://other.test keys=%%TESTDIR%%/keys2.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_alert rate_limited 3/10m;

    welby_zone limits 1m;
    welby_zone other 64k;

    server {
        listen 127.0.0.1:%%PORT_8080%% reuseport;

        add_header X-Pid $pid always;
        add_header X-Limit $welby_limit always;
        add_header X-Reason $welby_reason always;
        add_header X-Decision $welby_decision always;

        welby_limit name=srv zone=limits key=$http_x_inherit rate=1r/m;

        location /addr/ {
            welby on;
            welby_limit name=addr zone=limits key=ip rate=1r/m burst=2;
            js_content echo.echo;
        }

        location /hdr/ {
            welby on;
            welby_token off;
            welby_limit name=hdr zone=limits key=ip rate=1r/m burst=3;
            welby_limit_headers on;
            js_content echo.echo;
        }

        location /nohdr/ {
            welby on;
            welby_token off;
            welby_limit name=nohdr zone=limits key=ip rate=1r/m burst=3;
            js_content echo.echo;
        }

        location /sub/ {
            welby on;
            welby_limit name=per-sub zone=limits key=sub rate=1r/m burst=1;
            js_content echo.echo;
        }

        location /fhir/ {
            welby on;
            welby_fhir_base /fhir;
            welby_fhir_system_clients bulk;
            welby_limit name=per-patient zone=limits key=patient rate=1r/m;
            js_content echo.echo;
        }

        location /two/ {
            welby on;
            welby_token off;
            welby_limit name=wide zone=limits key=ip rate=1r/m burst=9;
            welby_limit name=narrow zone=other key=$http_x_client rate=1r/m;
            js_content echo.echo;
        }

        location /shared-a/ {
            welby on;
            welby_token off;
            welby_limit name=shared zone=limits key=ip rate=1r/m burst=1;
            js_content echo.echo;
        }

        location /shared-b/ {
            welby on;
            welby_token off;
            welby_limit name=shared zone=limits key=ip rate=1r/m burst=1;
            js_content echo.echo;
        }

        location /inherit/ {
            welby on;
            welby_token off;
            js_content echo.echo;
        }

        location /inherit-own/ {
            welby on;
            welby_token off;
            welby_limit name=own zone=limits key=ip rate=1r/m burst=9;
            js_content echo.echo;
        }

        location /redir/ {
            welby on;
            welby_token off;
            welby_limit name=once zone=limits key=ip rate=1r/m burst=1;
            root %%TESTDIR%%/empty;
            try_files $uri =404;
            error_page 404 = /redir-target/;
        }

        location /redir-target/ {
            welby on;
            welby_token off;
            welby_limit name=once zone=limits key=ip rate=1r/m burst=1;
            js_content echo.echo;
        }

        location /volley/ {
            welby on;
            welby_token off;
            welby_limit name=volley zone=limits key=ip rate=1r/m burst=19;
            js_content echo.echo;
        }

        location /dry/ {
            welby on;
            welby_token off;
            welby_limit name=dry zone=limits key=ip rate=1r/m mode=detect;
            js_content echo.echo;
        }

        location /ldetect/ {
            welby on;
            welby_token off;
            welby_mode detect;
            welby_limit name=ldry zone=limits key=ip rate=1r/m;
            js_content echo.echo;
        }
    }
}
EOF

my $conf = $t->read_file('nginx.conf');
$conf =~ s/^worker_processes 1;$/worker_processes 2;/m
    or die "no worker_processes line in the test globals\n";
$t->write_file('nginx.conf', $conf);
mkdir "$d/empty";

$t->run()->plan(72);

###############################################################################

my $n = 0;

# one request from a chosen address
sub get {
    my ($uri, $from, @h) = @_;
    return parse_response(http_req(uri => $uri, local => $from,
        headers => [@h]));
}

# the same, with the times it was sent and answered: (response, sent,
# received)
sub timed_get {
    my $t0 = time();
    my $r = get(@_);
    return ($r, $t0, time());
}

sub statuses {
    my ($uri, $from, $count, @h) = @_;
    return join ' ', map { my $r = get($uri, $from, @h); $r ? $r->status
        : 'none' } 1 .. $count;
}

sub tok {
    my (%set) = @_;
    return jwt(key => $key, set => { iss => 'https://issuer.test',
        aud => 'https://fhir.test', %set });
}

sub bearer { return 'Authorization: Bearer ' . tok(@_) }

# the audit record of a response
sub record { my ($r) = @_; return $t->audit_record($r->request_id) }

###############################################################################
# pre-auth: the address limit runs before the token step

my @r = map { get('/addr/x', '127.0.1.1') } 1 .. 3;
is(join(' ', map { $_->status } @r), '401 401 401',
    'address limit burst=2: three requests without a token reach the '
    . 'token step (401)');

my $r = get('/addr/x', '127.0.1.1');
is($r->status, 429, 'the 4th is refused by the address limit (429)');
is($r->reason_code, 'rate_limited', 'its OperationOutcome says rate_limited');

my $rec = record($r);
is($rec && $rec->{reason}, 'rate_limited', 'its record: reason rate_limited');
is_deeply($rec && $rec->{limit}, { name => 'addr', key => '127.0.1.1' },
    'its record: limit {name: addr, key: the address}');

my $id = $r->request_id;
ok($t->log_entries() =~ /refused id:\Q$id\E step:limit_address reason:rate_limited/,
    'the refusal line names the step limit_address');
unlike($t->read_file('error.log'), qr/welby: step:token id:\Q$id\E/,
    'the refused request never reached the token step');

$r = get('/addr/x', '127.0.1.1', bearer(sub => 'u-addr'));
is($r->status, 429, 'a valid token does not lift an address limit');

$r = get('/addr/x', '127.0.1.2');
is($r->status, 401, 'another address has its own count');

###############################################################################
# the RateLimit fields and Retry-After (draft-ietf-httpapi-ratelimit-headers)

my ($r1, $s1, $e1) = timed_get('/hdr/', '127.0.1.3');
is($r1->status, 200, 'welby_limit_headers on: the first passes');
is($r1->header('RateLimit-Policy'), '"hdr";q=4;w=240',
    'RateLimit-Policy "hdr";q=4;w=240 (1 + burst, refilled in 240 s)');
is($r1->header('RateLimit'), '"hdr";r=3;t=60',
    'RateLimit "hdr";r=3;t=60: 3 left, one more after 60 s');
is($r1->header('Retry-After'), undef, 'no Retry-After on an allowed answer');

get('/hdr/', '127.0.1.3') for 1 .. 2;
my ($r4, $s4, $e4) = timed_get('/hdr/', '127.0.1.3');
my ($r5, $s5, $e5) = timed_get('/hdr/', '127.0.1.3');

# the 4th was charged at a time in [$s4, $e4], the first at one in
# [$s1, $e1]: the next request is free 60 s after the first
my @window = (POSIX::ceil($s1 + 60 - $e5), POSIX::ceil($e1 + 60 - $s5));

like($r4->header('RateLimit') // '', qr/^"hdr";r=0;t=(\d+)$/,
    'the 4th: RateLimit r=0');
is($r5->status, 429, 'the 5th is refused');
my ($ra) = ($r5->header('Retry-After') // '') =~ /^(\d+)$/;
ok(defined $ra && $ra >= $window[0] && $ra <= $window[1],
    "the 5th: Retry-After $ra in [@window] (60 s after the first, rounded "
    . "up)");
is($r5->header('RateLimit'), qq{"hdr";r=0;t=$ra},
    'the 5th: RateLimit r=0 and t equal to Retry-After');
is($r5->header('RateLimit-Policy'), '"hdr";q=4;w=240',
    'the 5th: the same RateLimit-Policy');
is($r5->header('Content-Type'), 'application/fhir+json',
    'the 429 is the module\'s OperationOutcome');

$r = get('/nohdr/', '127.0.1.3');
is($r->header('RateLimit'), undef,
    'welby_limit_headers off: no RateLimit on an allowed answer');
get('/nohdr/', '127.0.1.3') for 1 .. 3;
$r = get('/nohdr/', '127.0.1.3');
ok($r->status == 429 && defined $r->header('Retry-After')
    && defined $r->header('RateLimit') && defined $r->header('RateLimit-Policy'),
    'welby_limit_headers off: a 429 still has Retry-After and RateLimit');

###############################################################################
# identity: by subject, after the policy

is(statuses('/sub/', '127.0.1.4', 3, bearer(sub => 'alice')),
    '200 200 429', 'key=sub burst=1: alice gets 2, the 3rd is refused');
is(statuses('/sub/', '127.0.1.4', 2, bearer(sub => 'bob')), '200 200',
    'bob, from the same address, has his own count');
is(get('/sub/', '127.0.1.5', bearer(sub => 'alice'))->status, 429,
    'alice from another address is still refused');
is(statuses('/sub/', '127.0.1.4', 2, 'Authorization: Bearer '
    . jwt(key => $key2, set => { iss => 'https://other.test',
    aud => 'https://fhir.test', sub => 'alice' })), '200 200',
    'alice of another issuer is another subject: her own 2');
is(statuses('/sub/', '127.0.1.4', 3, 'Authorization: Bearer x.y.z'),
    '401 401 401', 'invalid tokens are not counted for anybody');

$r = get('/sub/', '127.0.1.4', bearer(sub => 'bob'));
is($r->status, 429, 'bob\'s 3rd is refused');
$rec = record($r);
is_deeply($rec && $rec->{limit}, { name => 'per-sub', key => 'bob' },
    'its record: limit {name: per-sub, key: the subject}');
$id = $r->request_id;
ok($t->log_entries() =~ /refused id:\Q$id\E step:limit_identity reason:rate_limited/,
    'the refusal line names the step limit_identity');

$r = get('/sub/', '127.0.1.4');
is($r->status, 401, 'without a token, key=sub does not apply: the token '
    . 'step refuses');

###############################################################################
# by patient: each patient the request names

my $sys = bearer(sub => 'bulk-user', client_id => 'bulk',
    scope => 'system/*.read');

is(get('/fhir/Patient/p1', '127.0.1.6', $sys)->status, 200,
    'key=patient: a read of Patient/p1 passes');
$r = get('/fhir/Patient/p1', '127.0.1.6', $sys);
is($r->status, 429, 'the next read of p1 is refused');
is_deeply(record($r)->{limit}, { name => 'per-patient', key => 'p1' },
    'its record: limit {name: per-patient, key: p1}');
is(get('/fhir/Observation?patient=p2', '127.0.1.6', $sys)->status, 200,
    'a search for p2 passes: its own key');
is(get('/fhir/Observation?patient=p2,p3', '127.0.1.6', $sys)->status, 429,
    'a search for p2 and p3 is refused: p2 is spent');
is(get('/fhir/Patient/p3', '127.0.1.6', $sys)->status, 200,
    'p3 was not charged by that refusal');
is(statuses('/fhir/Patient', '127.0.1.6', 3, $sys), '200 200 200',
    'a search that names no patient is not limited by key=patient');

###############################################################################
# two rules: a refused request charges neither

is(get('/two/', '127.0.1.7', 'X-Client: a')->status, 200,
    'two rules: client a passes');
is(statuses('/two/', '127.0.1.7', 5, 'X-Client: a'), '429 429 429 429 429',
    'client a again: refused by the narrow rule, 5 times');
$r = get('/two/', '127.0.1.7', 'X-Client: a');
is($r->header('X-Limit'), 'narrow', '$welby_limit names the refusing rule');
$rec = record($r);
is($rec && $rec->{limit}{name}, 'narrow', 'and so does the record');
like($rec && $rec->{limit}{key} // '', qr/^[0-9a-f]{32}$/,
    'a variable key is recorded as the hex of what the zone keeps, not '
    . 'its value');
is(join(' ', map { get('/two/', '127.0.1.7', "X-Client: c$_")->status }
    1 .. 9), join(' ', ('200') x 9),
    'nine other clients pass: the refusals did not charge the wide rule');
$r = get('/two/', '127.0.1.7', 'X-Client: c10');
ok($r->status == 429 && $r->header('X-Limit') eq 'wide',
    'the 11th client is refused by the wide rule (10 = 1 + burst)');
is(get('/two/', '127.0.1.8', 'X-Client: c11')->status, 200,
    'client c11 from another address passes: its refusal charged nothing');

###############################################################################
# one rule name in two locations, inheritance, an internal redirect

is(get('/shared-a/', '127.0.1.9')->status, 200, 'name=shared in /shared-a/');
is(get('/shared-b/', '127.0.1.9')->status, 200, 'name=shared in /shared-b/');
is(get('/shared-a/', '127.0.1.9')->status, 429,
    'the two locations count together (burst=1: the 3rd is refused)');

is(statuses('/inherit/', '127.0.1.10', 2, 'X-Inherit: z'), '200 429',
    'a location without welby_limit inherits the server\'s rule');
is(statuses('/inherit-own/', '127.0.1.10', 3, 'X-Inherit: y'),
    '200 200 200', 'a location with its own rules does not');
is(get('/addr/x', '127.0.1.11', 'X-Inherit: z')->status, 401,
    'nor does /addr/ (its own address rule)');

@r = map { get('/redir/a', '127.0.1.12') } 1 .. 2;
is(join(' ', map { $_->status } @r), '200 200',
    'error_page into a location with the same rule: 2 pass (burst=1)');
$id = $r[1]->request_id;
my $runs = () = $t->read_file('error.log')
    =~ /welby: pipeline run id:\Q$id\E from step 0/g;
is($runs, 2, 'the 2nd ran the steps in both locations');
is(get('/redir/a', '127.0.1.12')->status, 429, 'the 3rd is refused: each '
    . 'was charged once, not once per location');

###############################################################################
# a volley over 40 connections at once: both workers, one count

sub volley {
    my ($uri, $from, $count) = @_;
    my @socks;

    for (1 .. $count) {
        my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
            PeerPort => $t->port(8080), LocalHost => $from, Proto => 'tcp')
            or die "connect: $!";
        push @socks, $s;
    }

    # all connected before any request is written: the workers take them
    # as the kernel hands them out (reuseport), then all requests go

    for my $s (@socks) {
        syswrite($s, "GET $uri HTTP/1.1\r\nHost: localhost\r\n"
            . "Connection: close\r\n\r\n");
    }

    my @out;

    for my $s (@socks) {
        my $raw = '';
        my $sel = IO::Select->new($s);
        while ($sel->can_read(10)) {
            my $got = sysread($s, my $buf, 65536);
            last unless $got;
            $raw .= $buf;
        }
        push @out, parse_response($raw);
        close $s;
    }

    return @out;
}

my @v = volley('/volley/', '127.0.1.13', 40);
my %pids = map { ($_ && $_->header('X-Pid') // '') => 1 } @v;
is(scalar(grep { $_ && $_->status == 200 } @v), 20,
    'a volley of 40 over 40 connections: exactly 20 pass (1 + burst=19)');
is(scalar(grep { $_ && $_->status == 429 } @v), 20,
    'and exactly 20 are refused');
is(scalar(keys %pids), 2, 'both workers answered the volley');

###############################################################################
# detect modes

is(get('/dry/', '127.0.1.14')->status, 200, 'mode=detect: the first passes');
$r = get('/dry/', '127.0.1.14');
is($r->status, 200, 'mode=detect: the 2nd, over the rate, passes too');
is($r->header('X-Limit'), 'dry', 'its $welby_limit names the rule');
is($r->header('Retry-After'), undef, 'no Retry-After');
$rec = record($r);
ok($rec && $rec->{outcome} eq 'allow' && !defined $rec->{reason},
    'its record: allowed, no reason (the rule only counts)');
is_deeply($rec && $rec->{limit}, { name => 'dry', key => '127.0.1.14' },
    'its record: limit {name: dry, key: the address}');
$id = $r->request_id;
ok($t->log_entries() =~ /\[warn\].*welby: detect id:\Q$id\E step:limit_address reason:rate_limited limit:dry/,
    'a [warn] line: detect, the step, the reason and the rule');

is(get('/ldetect/', '127.0.1.15')->status, 200, 'welby_mode detect: the '
    . 'first passes');
$r = get('/ldetect/', '127.0.1.15');
is($r->status, 200, 'welby_mode detect: the 2nd passes');
is($r->header('X-Decision') . ' ' . $r->header('X-Reason'),
    'detect rate_limited', '$welby_decision detect, $welby_reason '
    . 'rate_limited');
is($r->header('Retry-After'), undef, 'no Retry-After on what was let '
    . 'through');
is_deeply(record($r)->{limit}, { name => 'ldry', key => '127.0.1.15' },
    'its record: limit {name: ldry, key: the address}');

###############################################################################

# welby_alert rate_limited counts what the limits found, refused or not

my @alerts;
$t->wait_for_file('audit.log', sub {
    @alerts = grep { $_->{alert} && $_->{alert}{event} eq 'rate_limited' }
        map { JSON::PP->new->decode($_) } split /\n/, $_[0];
    return @alerts;
});
is(scalar(@alerts), 1, 'welby_alert rate_limited 3/10m: one alert record '
    . 'in the window');
is($alerts[0] && $alerts[0]{alert}{count}, 3, 'it fired at the third '
    . 'request a limit found');

unlike($t->log_entries(), qr/\[error\].*welby/, 'no [error] of the module');
