#!/usr/bin/perl

# The detectors attacked (welby_enumeration, welby_travel,
# welby_auth_throttle): patients a request reaches through its body (a
# batch of reads, a transaction, a write) or that only its answer shows;
# a stolen token refused abroad filling its owner's set; a reload that
# raises the bound; two issuers' subjects of one name; failures from
# rotated IPv6 addresses of one network, behind a trusted proxy and
# from an untrusted one; tokens in a cookie; pipelined requests and
# HTTP/2 streams of one connection; a ban across a reload, and of its
# rule only; a ban forgotten in a zone shared with a limit of a key the
# client picks, and kept in a zone of its own; the metrics page after
# all of it, by promtool.  Countries from t/lib/Welby/MMDB.pm:
# 127.0.1.0/24 JP, 127.0.2.0/24 US.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use IPC::Open3 qw(open3);
use Symbol qw(gensym);
use JSON::XS ();
use Time::HiRes qw(time);
use Welby::Nginx qw(http http_req parse_response);
use Welby::Prom qw(prom_parse prom_value);
use Welby::JWT qw(gen_key jwt write_jwks);
use Welby::MMDB;

BAIL_OUT('promtool is missing: make test installs prometheus')
    unless -x '/usr/bin/promtool';

my $t = Welby::Nginx->new();
my $d = $t->testdir();
my $J = JSON::XS->new->canonical;

my $key = gen_key('ES256', kid => 'k1');
my $okey = gen_key('ES256', kid => 'k2');       # the other issuer's
my $forged = gen_key('ES256', kid => 'k1');     # in no JWKS
write_jwks("$d/keys.jwks", $key);
write_jwks("$d/other.jwks", $okey);
Welby::MMDB::country_db("$d/country.mmdb");

system('openssl', 'req', '-x509', '-newkey', 'ec',
    '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    '-keyout', "$d/server.key", '-out', "$d/server.crt") == 0
    or die "openssl req failed";

for my $i (1 .. 20) {
    $t->write_file("data/fhir/Patient/p$i.json", $J->encode({
        resourceType => 'Patient', id => "p$i" }));
}

# reads whose patient only the answer shows
for my $i (1 .. 9) {
    $t->write_file("data/fhir/Observation/o$i.json", $J->encode({
        resourceType => 'Observation', id => "o$i", status => 'final',
        code => { text => 'weight' },
        subject => { reference => "Patient/p$i" } }));
}

$t->write_file("html/$_/ok", "ok\n")
    for qw(t rule ck mixed apart v6 v6site v6host h2);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_issuer https://other.test keys=%%TESTDIR%%/other.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_geoip2 %%TESTDIR%%/country.mmdb;

    welby_zone enum 1m;
    welby_zone travel 1m;
    welby_zone ban 1m;
    welby_zone mixed 32k;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;
        root %%TESTDIR%%/html;
        keepalive_requests 1000;

        welby on;

        location /fhir/ {
            welby_fhir_base /fhir;
            welby_enumeration zone=enum patients=3/1m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location = /fhir {
            welby_fhir_base /fhir;
            welby_enumeration zone=enum patients=3/1m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location = /big/fhir {
            welby_fhir_base /big/fhir;
            welby_enumeration zone=enum patients=50/1m action=alert;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir;
        }

        location /tr/fhir/ {
            welby_fhir_base /tr/fhir;
            welby_enumeration zone=enum patients=2/1m;
            welby_travel zone=travel window=1m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /rl/fhir/ {
            welby_fhir_base /rl/fhir;
            welby_enumeration zone=enum patients=2/1m exact=1;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /iss/fhir/ {
            welby_fhir_base /iss/fhir;
            welby_enumeration zone=enum patients=2/1m;
            welby_travel zone=travel window=1m;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }

        location /t/ {
            welby_auth_throttle zone=ban failures=3/1m ban=1m;
        }

        location /rule/ {
            welby_auth_throttle zone=ban failures=4/1m ban=1m;
        }

        location /ck/ {
            welby_token cookie=at;
            welby_auth_throttle zone=ban failures=3/1m ban=1m;
        }

        location /mixed/ {
            welby_limit name=flood zone=mixed key=$http_x_key rate=1000r/s;
            welby_auth_throttle zone=mixed failures=3/1m ban=1m;
        }

        location /apart/ {
            welby_limit name=flood zone=mixed key=$http_x_key rate=1000r/s;
            welby_auth_throttle zone=ban failures=3/1m ban=1m;
        }
    }

    # behind a trusted proxy (127.0.0.1): the client is its X-Forwarded-For
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        root %%TESTDIR%%/html;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        welby on;

        location /v6/ {
            welby_auth_throttle zone=ban failures=3/1m ban=1m;
        }

        location /v6site/ {
            welby_auth_throttle zone=ban failures=3/1m ban=1m
                                ipv6_prefix=60;
        }

        location /v6host/ {
            welby_auth_throttle zone=ban failures=3/1m ban=1m
                                ipv6_prefix=128;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8083%% ssl http2;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;
        root %%TESTDIR%%/html;

        welby on;

        location /h2/ {
            welby_auth_throttle zone=ban failures=3/1m ban=1m;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location /fhir/ {
            root %%TESTDIR%%/data;
            default_type application/fhir+json;
            if ($request_method !~ ^(GET|HEAD)$) {
                return 418;
            }
            error_page 418 = @echo;
            try_files $uri.json =404;
        }

        location = /fhir { js_content echo.echo; }

        location @echo { js_content echo.echo; }
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

my @P = map { "p$_" } 1 .. 20;

# a clinician's token: user/ scopes over 20 patients
sub token {
    my ($sub, %more) = @_;
    return jwt(key => $more{key} // $key, set => {
        iss => $more{iss} // 'https://issuer.test', sub => $sub,
        client_id => "app-$sub", scope => 'user/*.cruds', patient => undef,
        patients => [@P] });
}

my $badtok = jwt(key => $forged, set => { sub => 'nobody' });

sub code { my ($r) = @_; return $r ? $r->status . ' ' . ($r->reason_code
    // '-') : 'no answer' }

sub req {
    my (%o) = @_;
    return parse_response(http_req(method => $o{method} // 'GET',
        uri => $o{uri}, local => $o{from}, port => $o{port},
        headers => [
            (defined $o{token} ? "Authorization: Bearer $o{token}" : ()),
            (defined $o{body} ? 'Content-Type: application/fhir+json' : ()),
            @{ $o{headers} // [] }],
        (defined $o{body} ? (body => $o{body}) : ())));
}

sub read_patient {
    my ($base, $tok, $p, $from) = @_;
    return req(uri => "$base/Patient/$p", token => $tok, from => $from);
}

sub codes { join ', ', map { code(read_patient($_[0], $_[1], $_)) }
    @_[2 .. $#_] }

sub bundle {
    my ($type, @entries) = @_;
    return $J->encode({ resourceType => 'Bundle', type => $type,
        entry => [@entries] });
}

sub obs {
    my ($p) = @_;
    return { resourceType => 'Observation', status => 'final',
        code => { text => 'weight' },
        subject => { reference => "Patient/$p" } };
}

# the alert records of an event and key, once there are $want of them (or
# the deadline passed)
sub alerts {
    my ($event, $k, $want) = @_;
    my @found;
    $t->wait_for_file('audit.log', sub {
        @found = grep { $_->{alert} && $_->{alert}{event} eq $event
                && defined $_->{alert}{key} && $_->{alert}{key} eq $k }
            map { eval { JSON::XS->new->decode($_) } || () }
            split /\n/, $_[0];
        return @found >= $want;
    }, 3);
    return @found;
}

###############################################################################
# enumeration: the patients a request reaches through its body
# (patients=3 at /fhir)

# a batch of reads of ten patients names no patient in its URL
my $bt = token('batcher');
my $r = req(method => 'POST', uri => '/fhir', token => $bt,
    body => bundle('batch', map { { request => { method => 'GET',
        url => "Patient/p$_" } } } 1 .. 10));
is(code($r), '403 enumeration',
    'a batch of reads of ten patients is ten patients: refused');
is(codes('/fhir', $bt, qw(p1 p2 p3)), '200 -, 200 -, 200 -',
    'and it added none: three patients pass after it');
is(code(read_patient('/fhir', $bt, 'p4')), '403 enumeration',
    'the fourth is refused');

# searches in a batch count their patients
my $bs = token('batch-search');
is(code(req(method => 'POST', uri => '/fhir', token => $bs,
    body => bundle('batch', map { { request => { method => 'GET',
        url => "Observation?patient=p$_" } } } 1 .. 2)))
    . ', ' . code(req(method => 'POST', uri => '/fhir', token => $bs,
    body => bundle('batch', map { { request => { method => 'GET',
        url => "Observation?patient=p$_" } } } 3 .. 4))),
    '200 -, 403 enumeration',
    'searches of two patients in a batch pass, two more pass the bound');

# a transaction creating Observations of four patients
my $tt = token('transactor');
is(code(req(method => 'POST', uri => '/fhir', token => $tt,
    body => bundle('transaction', map { { resource => obs("p$_"),
        request => { method => 'POST', url => 'Observation' } } } 1 .. 4))),
    '403 enumeration',
    'a transaction writing for four patients is refused');

# single writes: the body names the patient, the URL does not
my $wt = token('writer');
is(join(', ', map { code(req(method => 'POST', uri => '/fhir/Observation',
    token => $wt, body => $J->encode(obs("p$_")))) } 1 .. 4),
    '200 -, 200 -, 200 -, 403 enumeration',
    'creates for four patients: the fourth is refused');
is(code(req(method => 'POST', uri => '/fhir/Observation', token => $wt,
    body => $J->encode(obs('p5')))), '403 enumeration', 'a fifth too');
is(code(req(method => 'POST', uri => '/fhir/Observation', token => $wt,
    body => $J->encode(obs('p2')))), '200 -',
    'a write for a patient already reached passes');

# reads whose patient only the answer shows: counted by the response check
my $ot = token('observer');
$r = undef;
my @oc = map { my $x = req(uri => "/fhir/Observation/o$_", token => $ot);
    $r //= $x if code($x) ne '200 -'; code($x) } 1 .. 4;
is(join(', ', @oc), '200 -, 200 -, 200 -, 403 enumeration',
    'reads of four patients\' Observations: the fourth answer is refused');
ok($r && $r->body !~ /Patient\/p4|weight/,
    'the refused answer shows nothing of the Observation');
is(code(req(uri => '/fhir/Observation/o2', token => $ot)), '200 -',
    'an answer of a patient already reached passes');
is(code(read_patient('/fhir', $ot, 'p3')), '200 -',
    'and the patients the answers showed count as reached');
my $rec = $t->audit_record($r ? $r->request_id : '-');
is($rec && $rec->{reason}, 'enumeration',
    'the refused answer\'s audit record says enumeration');
my @al = alerts('enumeration', 'observer', 1);
is(scalar @al, 1, 'one alert record, naming the subject');
my $json = $al[0] ? $J->encode($al[0]) : '';
ok($json ne '' && $json !~ /"p\d+"|Patient|Observation/,
    'and no patient, no resource of the answer');

# a hundred patients in one request, past the exact part, counted exactly
my $big = jwt(key => $key, set => { sub => 'bulk-reader',
    client_id => 'app-bulk', scope => 'user/*.rs', patient => undef,
    patients => [map { "p$_" } 1 .. 100] });
is(code(req(method => 'POST', uri => '/big/fhir', token => $big,
    body => bundle('batch', map { { request => { method => 'GET',
        url => "Patient/p$_" } } } 1 .. 100))), '200 -',
    'action=alert: a batch of reads of a hundred patients passes');
@al = alerts('enumeration', 'bulk-reader', 1);
is($al[0] && $al[0]{alert}{count}, 100,
    'its alert record counts the hundred exactly');

###############################################################################
# enumeration behind travel: a stolen token used abroad is refused and
# fills no set of its owner's (patients=2, window 1m at /tr)

my ($JP, $US) = ('127.0.1.5', '127.0.2.5');
my $vt = token('victim');
is(code(read_patient('/tr/fhir', $vt, 'p1', $JP)), '200 -',
    'the owner reads p1 from Japan');
is(join(', ', map { code(read_patient('/tr/fhir', $vt, $_, $US)) }
    qw(p2 p3 p4 p5)), join(', ', ('403 impossible_travel') x 4),
    'the token from the US reads four others: refused as travel');
is(code(read_patient('/tr/fhir', $vt, 'p6', $JP)), '200 -',
    'the owner\'s second patient passes: the refused reads were not counted');

###############################################################################
# two issuers' subjects of one name are two subjects (patients=2 at /iss)

my $ia = token('same-name');
my $ib = token('same-name', key => $okey, iss => 'https://other.test');
is(codes('/iss/fhir', $ia, qw(p1 p2)) . ', ' . codes('/iss/fhir', $ib,
    qw(p3 p4)), join(', ', ('200 -') x 4),
    'enumeration: each issuer\'s "same-name" has its own two patients');
is(code(read_patient('/iss/fhir', $ia, 'p5')), '403 enumeration',
    'and the first one\'s third is refused');
is(code(read_patient('/iss/fhir', token('other-name', key => $okey,
    iss => 'https://other.test'), 'p1', $US)), '200 -',
    'travel: the other issuer\'s subject from the US');
is(code(read_patient('/iss/fhir', token('other-name'), 'p1', $JP)),
    '200 -', 'and this issuer\'s of the same name from Japan: two homes');

###############################################################################
# the throttle: failures of one network, spread over its IPv6 addresses
# behind a trusted proxy

my $v6 = $t->port(8082);
sub v6 {
    my ($loc, $xff, $tok, $from) = @_;
    return code(req(uri => "/$loc/ok", port => $v6, token => $tok,
        from => $from, headers => ["X-Forwarded-For: $xff"]));
}
my $good = token('nurse');

is(join(', ', map { v6('v6', "2001:db8:6:1::$_", $badtok) } 1 .. 3),
    join(', ', ('401 token_signature') x 3),
    'three failures from three addresses of 2001:db8:6:1::/64');
is(v6('v6', '2001:db8:6:1:aaaa::99', $good), '429 auth_throttled',
    'the /64 is banned: a fourth address of it is refused');
is(v6('v6', '2001:db8:6:2::1', $good), '200 -',
    'another /64 passes');
@al = alerts('auth_throttled', '2001:db8:6:1::/64', 1);
is(scalar @al, 1, 'the ban\'s alert record names the /64');

is(join(', ', map { v6('v6site', "2001:db8:9:$_\::1", $badtok) }
    qw(10 17 1f)) . ', ' . v6('v6site', '2001:db8:9:1a::2', $good)
    . ', ' . v6('v6site', '2001:db8:9:20::1', $good),
    join(', ', ('401 token_signature') x 3)
    . ', 429 auth_throttled, 200 -',
    'ipv6_prefix=60: three /64s of 2001:db8:9:10::/60 banned as one, '
    . 'the next /60 not');

# an IPv6 address that embeds an IPv4 one is that IPv4 client
is(join(', ', map { v6('v6', "2002:7f00:605:$_\::1", $badtok) } 1 .. 3)
    . ', ' . v6('v6', '2002:7f00:605:ffff::9', $good),
    join(', ', ('401 token_signature') x 3) . ', 429 auth_throttled',
    'three /64s of the 6to4 site of 127.0.6.5 are one client: banned');
is(scalar alerts('auth_throttled', '127.0.6.5', 1), 1,
    'its alert record names the IPv4 address');
is(join(', ', map { v6('v6', '64:ff9b::7f00:607', $badtok) } 1 .. 3)
    . ', ' . v6('v6', '64:ff9b::7f00:608', $good),
    join(', ', ('401 token_signature') x 3) . ', 200 -',
    'NAT64: 127.0.6.7 banned, 127.0.6.8 behind the same translator not');
is(join(', ', map { v6('v6host', "2001:db8:7:1::$_", $badtok) } 1 .. 3)
    . ', ' . v6('v6host', '2001:db8:7:1::4', $good),
    join(', ', ('401 token_signature') x 3) . ', 200 -',
    'ipv6_prefix=128: each address is a client of its own');
is(join(', ', map { v6('v6host', '2001:db8:7:1::5', $badtok) } 1 .. 3)
    . ', ' . v6('v6host', '2001:db8:7:1::5', $good),
    join(', ', ('401 token_signature') x 3) . ', 429 auth_throttled',
    'and bans that address');

# from a peer that is no trusted proxy the header means nothing
is(join(', ', map { v6('v6', "2001:db8:8:$_\::1", $badtok, '127.0.6.9') }
    1 .. 3), join(', ', ('401 token_signature') x 3),
    'three failures from an untrusted peer, each claiming another network');
is(v6('v6', '2001:db8:8:9::1', $good, '127.0.6.9'), '429 auth_throttled',
    'its own address is banned, whatever it claims');

###############################################################################
# the throttle: a token in a cookie fails as one in the header

my $C = '127.0.6.10';
is(join(', ', map { code(req(uri => '/ck/ok', from => $C,
    headers => ["Cookie: theme=dark; at=$badtok"])) } 1 .. 3),
    join(', ', ('401 token_signature') x 3),
    'welby_token cookie=at: three bad cookies');
is(code(req(uri => '/ck/ok', from => $C,
    headers => ['Cookie: at=' . token('cookie-user')])), '429 auth_throttled',
    'ban the address');

###############################################################################
# the throttle: requests of one connection, pipelined and as HTTP/2
# streams, are counted one by one

sub pipelined {
    my ($from, @tokens) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(8080), LocalHost => $from, Proto => 'tcp',
        Timeout => 5) or return ();
    my $req = join '', map { "GET /t/ok HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $_\r\n\r\n" } @tokens;
    $req =~ s/\r\n\r\n\z/\r\nConnection: close\r\n\r\n/;
    syswrite($s, $req) or return ();
    my $buf = '';
    my $deadline = time() + 10;
    while (time() < $deadline) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    return $buf =~ m{HTTP/1\.1 (\d{3}) }g;
}

is(join(' ', pipelined('127.0.6.20', ($badtok) x 5, $good)),
    '401 401 401 429 429 429',
    'six pipelined requests in one write: three failures, then the ban');

sub h2 {
    my ($from, $n, $tok) = @_;
    my $url = 'https://localhost:' . $t->port(8083) . '/h2/ok';
    my $err = gensym;

    # curl waits for the first stream's connection, then multiplexes
    my $pid = open3(my $in, my $out, $err, 'curl', '-sk', '--http2',
        '--parallel', '--parallel-max', '10', '--interface', $from,
        '--resolve', 'localhost:' . $t->port(8083) . ':127.0.0.1',
        '--max-time', '10', '-H', "Authorization: Bearer $tok",
        '-w', '%{http_version} %{http_code} %{num_connects}\n',
        map { ('-o', '/dev/null', $url) } 1 .. $n);
    close $in;
    my @lines = <$out>;
    waitpid($pid, 0);
    return @lines;
}

my @h2 = h2('127.0.6.21', 5, $badtok);
is(join(' ', sort map { (split)[1] } @h2), '401 401 401 429 429',
    'five HTTP/2 streams at once: three failures, then the ban');
is(join(' ', map { (split)[0] } @h2), '2 2 2 2 2', 'all of them HTTP/2');
my $conns = 0;
$conns += (split)[2] for @h2;
is($conns, 1, 'on one connection');

###############################################################################
# the throttle: a ban is of its rule (documented), and outlives a reload
# (together with the enumeration bound raised by it)

my $B = '127.0.6.40';
is(join(', ', map { code(req(uri => '/t/ok', from => $B, token => $badtok)) }
    1 .. 3) . ', ' . code(req(uri => '/t/ok', from => $B, token => $good)),
    join(', ', ('401 token_signature') x 3) . ', 429 auth_throttled',
    'three failures at /t ban the address');
is(code(req(uri => '/rule/ok', from => $B, token => $good)), '200 -',
    'a location of another rule (failures=4) has not banned it');

# exact=1, patients=2: past one patient the set is the bitmap; a new
# patient whose bit another took (a chance of a few in 2048) passes as
# one seen, so the first refusal is looked for among several
sub first_refused {
    my ($base, $tok, @ids) = @_;
    for my $p (@ids) {
        my $c = code(read_patient($base, $tok, $p));
        return $p if $c eq '403 enumeration';
        return "$p: $c" if $c ne '200 -';
    }
    return undef;
}

my $rt = token('reloader');
is(codes('/rl/fhir', $rt, qw(p1 p2)), '200 -, 200 -',
    'patients=2 exact=1: two pass');
like(first_refused('/rl/fhir', $rt, map { "p$_" } 3 .. 8) // 'none',
    qr/^p\d+$/, 'a third is refused');
is(code(read_patient('/rl/fhir', $rt, 'p1')), '403 enumeration',
    'past the bound the bitmap refuses p1 too');

{
    my $conf = $t->read_file('nginx.conf');
    $conf =~ s{patients=2/1m exact=1}{patients=4/1m exact=1}
        or die "no /rl bound in nginx.conf\n";
    $t->write_file('nginx.conf', $conf);
}
ok($t->reload(), 'reload: the /rl bound raised to 4, the rest the same');

$r = req(uri => '/t/ok', from => $B, token => $good);
is(code($r), '429 auth_throttled', 'the ban outlived the reload');
ok($r && $r->header('Retry-After') > 1,
    'with what is left of it');
is(codes('/rl/fhir', $rt, qw(p1 p2)), '200 -, 200 -',
    'patients=4 over the kept set: p1 and p2 pass again');
is(codes('/rl/fhir', $rt, qw(p9 p10)), '200 -, 200 -',
    'two new ones pass');
like(first_refused('/rl/fhir', $rt, map { "p$_" } 11 .. 16) // 'none',
    qr/^p\d+$/, 'and a fifth is refused');

###############################################################################
# the throttle's bans in a zone shared with a limit whose key the client
# picks: a flood of keys makes the zone forget them (documented); in a
# zone of its own a ban stays

my ($M, $A, $F) = ('127.0.6.50', '127.0.6.51', '127.0.6.52');
is(join(', ', map { code(req(uri => '/mixed/ok', from => $M,
    token => $badtok)) } 1 .. 3) . ', '
    . code(req(uri => '/mixed/ok', from => $M, token => $good)),
    join(', ', ('401 token_signature') x 3) . ', 429 auth_throttled',
    'a ban in zone "mixed"');
is(join(', ', map { code(req(uri => '/apart/ok', from => $A,
    token => $badtok)) } 1 .. 3) . ', '
    . code(req(uri => '/apart/ok', from => $A, token => $good)),
    join(', ', ('401 token_signature') x 3) . ', 429 auth_throttled',
    'a ban in zone "ban", behind a limit in "mixed"');

# 600 records of 128 bytes are more than the 32 KB zone holds
my $flood = 0;
for my $i (1 .. 600) {
    my $x = req(uri => '/apart/ok', from => $F, headers => ["X-Key: k$i"]);
    $flood++ if $x && $x->status == 401;
}
is($flood, 600, '600 requests, each of a new X-Key, no token');
is(code(req(uri => '/mixed/ok', from => $M, token => $good)), '200 -',
    'the shared zone forgot the ban');
is(code(req(uri => '/apart/ok', from => $A, token => $good)),
    '429 auth_throttled', 'the zone of its own kept it');

###############################################################################
# the metrics page after the detections: valid exposition format

my $page = parse_response(http_req(uri => '/metrics',
    port => $t->port(8099)));
my $p = prom_parse($page ? $page->body : '');
ok($page && !@{ $p->{errors} }, 'the metrics page parses')
    or diag(join "\n", @{ $p->{errors} });
ok((prom_value($p, 'welby_detections_total', detector => 'enumeration')
    // 0) > 0, 'with the enumeration detections');

{
    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, '/usr/bin/promtool', 'check',
        'metrics');
    print $in ($page ? $page->body : '');
    close $in;
    my $said = join '', <$out>, <$err>;
    waitpid($pid, 0);
    is($? >> 8, 0, 'promtool check metrics accepts it') or diag($said);
}

###############################################################################
# nginx -t of ipv6_prefix=

for my $case (['ipv6_prefix=8', 'a prefix below 16'],
    ['ipv6_prefix=129', 'a prefix above 128'],
    ['ipv6_prefix=x', 'no number'])
{
    my ($param, $what) = @$case;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    welby_zone ban 1m;
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        location / {
            welby on;
            welby_auth_throttle zone=ban failures=3/1m ban=1s $param;
        }
    }
}
EOF
    my ($code, $out) = $t->test_config('bad.conf');
    like($code ? $out : '',
        qr/invalid parameter "\Q$param\E", ipv6_prefix= must be 16 to 128/,
        "nginx -t: $what");
}

$t->done_testing();
