#!/usr/bin/perl

# Transport security of a "welby on" location (welby_tls, welby_tls_min,
# welby_hsts, welby_trusted_proxy) and the shipped TLS profile
# (conf/welby-tls.conf) and plain-HTTP redirect (conf/welby-http.conf):
# old protocols and weak ciphers refused by the server, plain HTTP refused
# with tls_required and an audit record, HSTS on every HTTPS answer of a
# protected location and never on plain HTTP, and a trusted proxy that
# vouches for the client leg.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Welby::Nginx qw(http_req parse_response);
use Welby::PKI;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $pki = Welby::PKI->new($d);

# the legacy server's DHE group (a named one: nothing to generate)
my $genpkey = 'openssl genpkey -genparam -algorithm DH '
    . "-pkeyopt group:ffdhe2048 -out $d/dh.pem";
my $dh = `$genpkey 2>&1`;
die "$genpkey: $dh" if $?;

my %C = map { $_ => $pki->cert($_) } qw(server_ec server_rsa2048);
my $REPO = $Welby::Nginx::REPO;

(my $conf = <<'EOF') =~ s/%%(\w+)%%/exists $C{lc $1} ? $C{lc $1}{crt} : "%%$1%%"/ge;
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_token off;    # tokens: t/10-token.t
    welby_audit_log %%TESTDIR%%/audit.log;

    # a marker of the test's own: X-Request-Id is the gateway's
    log_format backend '$http_x_test_mark $request_method $request_uri';

    # the gateway: HTTPS (EC and RSA certificates, for the cipher checks)
    # and a plain listener in the same server
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;

        ssl_certificate     %%SERVER_EC%%;
        ssl_certificate_key %%SERVER_EC_KEY%%;
        ssl_certificate     %%SERVER_RSA2048%%;
        ssl_certificate_key %%SERVER_RSA2048_KEY%%;
        include %%REPO%%/conf/welby-tls.conf;

        add_header X-Reason $welby_reason always;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /sts/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /preload/ {
            welby on;
            welby_hsts max-age=63072000 includeSubDomains preload;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /nohsts/ {
            welby on;
            welby_hsts off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /notls/ {
            welby on;
            welby_tls off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /tls13/ {
            welby on;
            welby_tls_min TLSv1.3;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /open/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # a legacy server (no welby, anything goes): the control showing that
    # the client commands below really offer what the gateway refuses
    server {
        listen 127.0.0.1:%%PORT_8444%% ssl;
        ssl_certificate     %%SERVER_EC%%;
        ssl_certificate_key %%SERVER_EC_KEY%%;
        ssl_certificate     %%SERVER_RSA2048%%;
        ssl_certificate_key %%SERVER_RSA2048_KEY%%;
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
        ssl_ciphers ALL:eNULL:@SECLEVEL=0;
        ssl_dhparam %%TESTDIR%%/dh.pem;
        location / { return 200 "legacy\n"; }
    }

    # the plain-HTTP side of the gateway
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        include %%REPO%%/conf/welby-http.conf;
    }

    # behind a trusted proxy (the TCP peer is 127.0.0.1)
    server {
        listen 127.0.0.1:%%PORT_8091%%;
        welby_trusted_proxy 127.0.0.1;
        add_header X-Reason $welby_reason always;
        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # a proxy address that is not ours
    server {
        listen 127.0.0.1:%%PORT_8092%%;
        welby_trusted_proxy 127.0.0.2;
        add_header X-Reason $welby_reason always;
        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the proxy also tells the protocol of the client leg
    server {
        listen 127.0.0.1:%%PORT_8093%%;
        welby_trusted_proxy 127.0.0.1 protocol_header=X-Forwarded-Tls;
        add_header X-Reason $welby_reason always;
        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # realip in front: the trusted-proxy check still uses the TCP peer
    server {
        listen 127.0.0.1:%%PORT_8094%%;
        welby_trusted_proxy 127.0.0.1;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        add_header X-Reason $welby_reason always;
        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # realip turns $remote_addr into the trusted 127.0.0.2; the TCP peer
    # (127.0.0.1) is not trusted
    server {
        listen 127.0.0.1:%%PORT_8095%%;
        welby_trusted_proxy 127.0.0.2;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        add_header X-Reason $welby_reason always;
        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the backends: the echo, and the echo with its own HSTS header
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/backend.log backend;
        location / { js_content echo.echo; }
    }

    server {
        listen 127.0.0.1:%%PORT_8082%%;
        access_log %%TESTDIR%%/backend.log backend;
        add_header Strict-Transport-Security "max-age=5" always;
        location / { js_content echo.echo; }
    }
}
EOF
$conf =~ s/%%SERVER_EC_KEY%%/$C{server_ec}{key}/g;
$conf =~ s/%%SERVER_RSA2048_KEY%%/$C{server_rsa2048}{key}/g;
$conf =~ s/%%REPO%%/$REPO/g;
$t->write_file_expand('nginx.conf', $conf);

$t->run()->plan(95);

my $TLS    = $t->port(8443);
my $PLAIN  = $t->port(8080);
my $LEGACY = $t->port(8444);
my $HSTS   = 'max-age=31536000; includeSubDomains';
my $HEX32  = qr/^[0-9a-f]{32}\z/;

sub req {
    my (%o) = @_;
    return parse_response(http_req(%o));
}

sub tls { return (port => $TLS, ssl => 1, @_) }

sub records {
    my @r;
    for my $line (split /\n/, $t->read_file('audit.log')) {
        push @r, eval { decode_json($line) } // { bad => $line };
    }
    return @r;
}

# the one audit record of a response (by its X-Request-Id), {} if none
sub audit {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return {};
    my @a = grep { ($_->{id} // '') eq $id } records();
    return @a == 1 ? $a[0] : { count => scalar @a };
}

# did a request with this id reach a backend?  A request sent to the
# backend afterwards, once in its log, shows that the backend has logged
# whatever came before (a request with a body is logged only after its
# lingering close)
my $barrier = 0;
sub reached_backend {
    my ($id) = @_;
    my $mark = 'barrier-' . ++$barrier;
    http_req(port => $t->port(8081), headers => ["X-Test-Mark: $mark"]);
    $t->wait_for_log(qr/^\Q$mark\E /, 10, 'backend.log');
    return scalar grep { /^\Q$id\E / } split /\n/, $t->read_file('backend.log');
}

sub outcome_code {
    my ($r) = @_;
    my $j = $r && $r->json or return '';
    return ($j->{resourceType} // '') . '/'
        . (eval { $j->{issue}[0]{code} } // '') . '/'
        . (eval { $j->{issue}[0]{details}{coding}[0]{code} } // '');
}

# openssl s_client, output (stdout and stderr) returned
sub s_client {
    my ($port, @args) = @_;
    return `openssl s_client -connect 127.0.0.1:$port -servername localhost @args </dev/null 2>&1`;
}

###############################################################################
# protocols: TLS 1.0 and 1.1 refused by the server itself
#
# The client is allowed to offer them (@SECLEVEL=0 re-enables TLS 1.0/1.1
# in OpenSSL 3); the legacy server on the same nginx accepts the same
# command, so the protocol_version alert (70) received from the gateway is
# the server's refusal, not the client's.

for my $p (['tls1', 'TLSv1'], ['tls1_1', 'TLSv1.1']) {
    my ($opt, $name) = @$p;
    my @cmd = ("-$opt", '-cipher', 'DEFAULT:@SECLEVEL=0');

    my $out = s_client($LEGACY, @cmd);
    like($out, qr/^\s*Protocol\s*:\s*\Q$name\E\s*$/m,
        "$name: the client command does negotiate $name with a legacy server")
        or diag($out);

    $out = s_client($TLS, @cmd);
    ok($out =~ /alert protocol version/ && $out =~ /SSL alert number 70/
        && $out =~ /Cipher is \(NONE\)/,
        "$name: the gateway answers with a protocol_version alert")
        or diag($out);
}

# TLS 1.2 and 1.3 accepted

for my $v (qw(TLSv1_2 TLSv1_3)) {
    my $r = req(tls(uri => '/fhir/Patient/1', SSL_version => $v));
    is($r && $r->status, 200, "$v: accepted, 200 from the backend");
}

# HTTP/2 with ALPN (curl)

sub h2 {
    my ($path, @args) = @_;
    my $out = `curl -sk --http2 -D - -o /dev/null --max-time 10 @args 'https://localhost:$TLS$path' 2>&1`;
    my @lines = split /\r\n/, $out;
    my $status = shift @lines // '';
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        push @{ $h{lc $k} }, $v;
    }
    return ($status, \%h);
}

my ($status, $h) = h2('/fhir/Patient/1');
like($status, qr{^HTTP/2 200}, 'HTTP/2 over ALPN: 200');
is(join('|', @{ $h->{'strict-transport-security'} || [] }), $HSTS,
    'HTTP/2: one strict-transport-security, the default value');

###############################################################################
# ciphers (TLS 1.2): only ECDHE with AEAD
#
# The gateway has an RSA and an EC certificate, so an RSA suite is refused
# for what it is, not for a missing certificate type.  Each weak suite is
# first negotiated with the legacy server (the client does offer it; a
# suite this client cannot offer fails that check, it is never skipped).
# The last one is strong, and refused all the same: the profile is a list
# of suites, not a filter of weak ones.

my @weak = (
    ['AES128-SHA',               'RSA key exchange, CBC'],
    ['ECDHE-RSA-AES128-SHA',     'CBC'],
    ['ECDHE-ECDSA-AES256-SHA384', 'CBC'],
    ['AES128-GCM-SHA256',        'no forward secrecy'],
    ['AES256-GCM-SHA384',        'no forward secrecy'],
    ['DHE-RSA-AES128-GCM-SHA256', 'finite-field DHE'],
    ['ECDHE-ECDSA-NULL-SHA',     'no encryption'],
    ['ECDHE-ECDSA-ARIA128-GCM-SHA256', 'not in the profile'],
);

for my $w (@weak) {
    my ($c, $why) = @$w;
    my @cmd = ('-tls1_2', '-cipher', "$c:\@SECLEVEL=0");

    my $out = s_client($LEGACY, @cmd);
    like($out, qr/Cipher is \Q$c\E\b/,
        "$c: the client command negotiates it with a legacy server")
        or diag($out);

    $out = s_client($TLS, @cmd);
    ok($out =~ /alert handshake failure/ && $out =~ /SSL alert number 40/
        && $out =~ /Cipher is \(NONE\)/,
        "$c ($why): refused by the gateway with a handshake_failure alert")
        or diag($out);
}

# 3DES and RC4 cannot be shown refused by a handshake here: Debian's
# OpenSSL 3, the library of nginx and of this client, has no such suite at
# any security level, so nothing on this machine negotiates one.  Should a
# build bring them back, this fails, and they need rows above.

for my $c (qw(DES-CBC3-SHA RC4-SHA)) {
    my $out = `openssl ciphers -s -tls1_2 '$c:\@SECLEVEL=0' 2>&1`;
    ok($? != 0 && $out =~ /no cipher match/,
        "$c: this OpenSSL has no such suite, not even at security level 0")
        or diag($out);
}

for my $c (qw(ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256
    ECDHE-ECDSA-CHACHA20-POLY1305))
{
    my $out = s_client($TLS, '-tls1_2', '-cipher', $c);
    like($out, qr/Cipher is \Q$c\E\b/, "$c: accepted by the gateway")
        or diag($out);
}

###############################################################################
# HSTS

my $r = req(tls(uri => '/fhir/Patient/1'));
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    'HSTS: an allowed response has exactly the default header');

$r = req(tls(uri => '/fhir/Patient/1', method => 'PROPFIND'));
is($r && $r->status, 405, 'HSTS: PROPFIND is refused with 405');
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    'HSTS: the refusal has the default header too');

$r = req(tls(uri => '/sts/x'));
is($r && $r->status, 200, 'HSTS: the backend that sends its own header answers 200');
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    "HSTS: the backend's header is replaced, exactly one remains");

$r = req(tls(uri => '/preload/x'));
is(join('|', $r->header('Strict-Transport-Security')),
    'max-age=63072000; includeSubDomains; preload',
    'HSTS: welby_hsts max-age=63072000 includeSubDomains preload');

$r = req(tls(uri => '/nohsts/x'));
ok($r && $r->status == 200
    && $r->header_count('Strict-Transport-Security') == 0,
    'HSTS: welby_hsts off sends none');

$r = req(tls(uri => '/open/x'));
ok($r && $r->status == 200
    && $r->header_count('Strict-Transport-Security') == 0,
    'HSTS: a location without welby sends none');

###############################################################################
# the plain-HTTP server (conf/welby-http.conf): 308 to the same URL

$r = req(port => $t->port(8090), host => 'phr.example.test',
    uri => '/fhir/Patient/redirect-get?name=x&_count=2',
    headers => ['X-Test-Mark: redirect-get-1']);
is($r && $r->status . ' ' . ($r->header('Location') // ''),
    '308 https://phr.example.test/fhir/Patient/redirect-get?name=x&_count=2',
    'welby-http.conf: GET answered 308 to https, path and query kept');

$r = req(port => $t->port(8090), host => 'phr.example.test', method => 'POST',
    uri => '/fhir/Patient?_format=json', body => '{"resourceType":"Patient"}',
    headers => ['Content-Type: application/fhir+json',
        'X-Test-Mark: redirect-post-1']);
is($r && $r->status . ' ' . ($r->header('Location') // ''),
    '308 https://phr.example.test/fhir/Patient?_format=json',
    'welby-http.conf: POST answered 308 (method and body kept by the client)');

is(reached_backend('redirect-get-1') + reached_backend('redirect-post-1'), 0,
    'welby-http.conf: nothing is forwarded to a backend');

###############################################################################
# plain HTTP to a "welby on" location (welby_tls required by default)

# (the control for the "not contacted" checks: an allowed request's id is
# in the backend's log)
$r = req(tls(uri => '/fhir/Patient/1', headers => ['X-Test-Mark: reach-1']));
is(reached_backend('reach-1'), 1,
    'control: an allowed request is seen by the backend, with its id');

$r = req(port => $PLAIN, uri => '/fhir/Patient/1',
    headers => ['X-Test-Mark: plain-1']);
is($r && $r->status, 403, 'plain HTTP: refused with 403');
like($r && $r->header('X-Request-Id') // '', $HEX32,
    'plain HTTP: the refusal carries a request id');
is($r && $r->json && $r->json->{id}, $r && $r->header('X-Request-Id'),
    'plain HTTP: the OperationOutcome carries the same id');
is(outcome_code($r), 'OperationOutcome/security/tls_required',
    'plain HTTP: OperationOutcome, issue type security, reason tls_required');
is($r && $r->header('X-Reason'), 'tls_required',
    'plain HTTP: $welby_reason is tls_required');
is($r && $r->header_count('Strict-Transport-Security'), 0,
    'plain HTTP: no Strict-Transport-Security on a plain response');
is(reached_backend('plain-1'), 0, 'plain HTTP: the backend is not contacted');

my $a = audit($r);
is(join('/', map { $_ // '' } $a->{reason}, $a->{outcome}, $a->{http}{status}),
    'tls_required/deny/403', 'plain HTTP: audit reason, outcome and status');
ok(!exists $a->{tls} && !exists $a->{count},
    'plain HTTP: the audit record has no tls object');

# plain HTTP sent to the HTTPS port: nginx's 497, answered by the module

$r = req(port => $TLS, uri => '/fhir/Patient/1');
is($r && $r->status, 403, '497 (plain HTTP to the HTTPS port): 403');
like($r && $r->header('X-Request-Id') // '', $HEX32,
    '497: the refusal carries a request id');
is(outcome_code($r), 'OperationOutcome/security/tls_required',
    '497: OperationOutcome with reason tls_required');
is($r && $r->header_count('Strict-Transport-Security'), 0,
    '497: no Strict-Transport-Security on the plain response');
$a = audit($r);
is(join('/', map { $_ // '' } $a->{reason}, $a->{outcome}, $a->{http}{status}),
    'tls_required/deny/403', '497: audit record with tls_required, deny, 403');

# welby_tls off

$r = req(port => $PLAIN, uri => '/notls/x');
ok($r && $r->status == 200
    && $r->header_count('Strict-Transport-Security') == 0,
    'welby_tls off: plain HTTP allowed (200), no HSTS');

# welby_tls_min TLSv1.3

$r = req(tls(uri => '/tls13/x', SSL_version => 'TLSv1_2',
    headers => ['X-Test-Mark: tls13-with-12']));
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'welby_tls_min TLSv1.3: a TLS 1.2 client is refused with tls_required');
is(outcome_code($r), 'OperationOutcome/security/tls_required',
    'welby_tls_min TLSv1.3: the refusal is an OperationOutcome');
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    'welby_tls_min TLSv1.3: the refusal (over HTTPS) has HSTS');
is(reached_backend('tls13-with-12'), 0,
    'welby_tls_min TLSv1.3: the backend is not contacted');
$a = audit($r);
is(join('/', map { $_ // '' } $a->{reason}, $a->{tls}{protocol}),
    'tls_required/TLSv1.2', 'welby_tls_min TLSv1.3: audit reason and protocol');

$r = req(tls(uri => '/tls13/x', SSL_version => 'TLSv1_3'));
is($r && $r->status, 200, 'welby_tls_min TLSv1.3: a TLS 1.3 client is allowed');

###############################################################################
# the audit record of allowed TLS requests

$r = req(tls(uri => '/fhir/Patient/1', SSL_version => 'TLSv1_3',
    SSL_ciphersuites => 'TLS_CHACHA20_POLY1305_SHA256'));
$a = audit($r);
is($a->{outcome}, 'allow', 'audit TLS 1.3: outcome allow');
is(join(' ', map { $_ // '-' } @{ $a->{tls} || {} }{qw(protocol cipher client_cert)}),
    'TLSv1.3 TLS_CHACHA20_POLY1305_SHA256 none',
    'audit TLS 1.3: tls.protocol, tls.cipher, tls.client_cert none');
ok(!exists(($a->{tls} || {})->{proxy})
    && !exists(($a->{tls} || {})->{client_cert_error}),
    'audit TLS 1.3: no proxy, no client_cert_error');
ok(!exists(($a->{agent} || {})->{cert_sha256}),
    'audit TLS 1.3: no agent.cert_sha256 without a client certificate');

$r = req(tls(uri => '/fhir/Patient/1', SSL_version => 'TLSv1_2',
    SSL_cipher_list => 'ECDHE-ECDSA-AES128-GCM-SHA256'));
$a = audit($r);
is(join(' ', map { $_ // '-' } @{ $a->{tls} || {} }{qw(protocol cipher client_cert)}),
    'TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256 none',
    'audit TLS 1.2: tls.protocol, tls.cipher (OpenSSL name), client_cert none');

###############################################################################
# a trusted proxy (welby_trusted_proxy 127.0.0.1)

my $TP = $t->port(8091);

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https']);
is($r && $r->status, 200, 'trusted proxy, X-Forwarded-Proto https: 200');
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    'trusted proxy: HSTS sent (the client leg was HTTPS)');
$a = audit($r);
is(($a->{tls} || {})->{proxy}, '127.0.0.1',
    'trusted proxy: audit tls.proxy is the proxy address');
ok(!exists(($a->{tls} || {})->{protocol}),
    'trusted proxy: no tls.protocol without protocol_header=');

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: HTTPS']);
is($r && $r->status, 200, 'trusted proxy: the value is case-insensitive');

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Test-Mark: proxy-noheader']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'trusted proxy, no X-Forwarded-Proto: 403 tls_required');
is($r && $r->header_count('Strict-Transport-Security'), 0,
    'trusted proxy, no X-Forwarded-Proto: no HSTS');
is(reached_backend('proxy-noheader'), 0,
    'trusted proxy, no X-Forwarded-Proto: the backend is not contacted');
ok(!exists audit($r)->{tls},
    'trusted proxy, no X-Forwarded-Proto: no tls object in the audit record');

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: http']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'trusted proxy, X-Forwarded-Proto http: 403 tls_required');

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Proto: https']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'trusted proxy, two X-Forwarded-Proto headers: 403 tls_required');

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https, http']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'trusted proxy, X-Forwarded-Proto "https, http": 403 tls_required');

$r = req(port => $TP, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Tls: TLSv1.3']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'trusted proxy: another header than X-Forwarded-Proto does not count');

# an untrusted peer: the header is ignored

$r = req(port => $t->port(8092), uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Test-Mark: untrusted-1']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'untrusted peer (only 127.0.0.2 trusted), X-Forwarded-Proto https: 403');
is(reached_backend('untrusted-1'), 0,
    'untrusted peer: the backend is not contacted');
$a = audit($r);
ok(!exists $a->{tls}, 'untrusted peer: no tls object (no proxy vouched)');

# protocol_header=X-Forwarded-Tls (welby_tls_min TLSv1.2 by default)
#
# protocol_header= is a condition on top of the proto header
# (X-Forwarded-Proto: https is still needed).

my $TPV = $t->port(8093);

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Tls: TLSv1.3']);
is($r && $r->status, 200, 'protocol_header: TLSv1.3 allowed');
$a = audit($r);
is(join(' ', map { $_ // '-' } @{ $a->{tls} || {} }{qw(protocol proxy)}),
    'TLSv1.3 127.0.0.1',
    'protocol_header: audit tls.protocol is the header value, tls.proxy');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Tls: TLSv1.2']);
is($r && $r->status, 200, 'protocol_header: TLSv1.2 allowed (the minimum)');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Tls: TLSv1.1']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'protocol_header: TLSv1.1 refused with tls_required');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'protocol_header: missing protocol header refused with tls_required');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Tls: TLSv1.3']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'protocol_header: TLSv1.3 without X-Forwarded-Proto https is refused');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Tls: TLSv1.3',
        'X-Forwarded-Tls: TLSv1.3']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'protocol_header: two protocol headers refused with tls_required');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Tls: SSLv3']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'protocol_header: SSLv3 refused with tls_required');

$r = req(port => $TPV, uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-Proto: https', 'X-Forwarded-Tls: banana']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'protocol_header: an unknown protocol refused with tls_required');

# realip: the proxy check uses the TCP peer; the audit source is the client

$r = req(port => $t->port(8094), uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-For: 203.0.113.7', 'X-Forwarded-Proto: https']);
is($r && $r->status, 200,
    'realip: X-Forwarded-For does not hide the trusted TCP peer (200)');
$a = audit($r);
is(join(' ', map { $_ // '-' } ($a->{source} || {})->{ip},
        ($a->{tls} || {})->{proxy}),
    '203.0.113.7 127.0.0.1',
    'realip: audit source.ip is the forwarded client, tls.proxy the TCP peer');

$r = req(port => $t->port(8095), uri => '/fhir/Patient/1',
    headers => ['X-Forwarded-For: 127.0.0.2', 'X-Forwarded-Proto: https']);
is($r && $r->status . ' ' . ($r->header('X-Reason') // ''), '403 tls_required',
    'realip: a forwarded address equal to the trusted proxy does not make an '
    . 'untrusted TCP peer trusted');
