#!/usr/bin/perl

# The geo step under attack, and under a careless operator: every way
# found for a request from a denied country to get through, for a
# country to be attributed wrongly ($welby_country, the audit record's
# source), for the gateway to crash, or for a configuration that looks
# right to do something else.  Each finding is a check here; what is so
# by design (nginx's realip rules, the PROXY protocol, early refusals)
# is checked as README says it.
#
# Subrequests into a location with a country list; IPv6 addresses that
# embed an IPv4 one (6to4, Teredo, NAT64) through a trusted proxy's
# X-Forwarded-For; country codes a database holds that are no country;
# a file with no country.iso_code of two letters; a record that does not
# decode at run time; the file truncated or rewritten in place under the
# running workers; record_size 32 and IPv4-only files; realip chains,
# the PROXY protocol, UNIX sockets, keep-alive and HTTP/2 connections
# whose requests come from different addresses; internal redirects into
# a location with a list; nginx's early refusals; the cost: one lookup
# per request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::UNIX;
use JSON::XS ();
use Welby::Nginx qw(http http_req parse_response);
use Welby::MMDB;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

# The test map, and beside it what no tidy database holds:
#   127.0.6.0/24  ZZ            (DB-IP's code for "unknown": no country)
#   127.0.7.0/24  us            (lowercase)
#   127.0.8.0/24  only registered_country US (no country: unknown)
my %MAP = (%Welby::MMDB::COUNTRY,
    '127.0.6.0/24' => 'ZZ',
    '127.0.7.0/24' => 'us',
);
my %RECORDS = (
    '127.0.8.0/24' => { registered_country => { iso_code => 'US' } },
);

# MaxMind's layout: an IPv6 tree, IPv4 at ::/96, aliases for
# ::ffff:0:0/96, 2001::/32 (Teredo) and 2002::/16 (6to4)
Welby::MMDB::country_db("$d/country.mmdb", map => \%MAP,
    records => \%RECORDS);
Welby::MMDB::asn_db("$d/asn.mmdb");

# pages whose SSI includes a location with an allow list
$t->write_file('html/page/inc.html',
    "a <!--# include virtual=\"/jp/included\" --> b\n");

system('openssl', 'req', '-x509', '-newkey', 'ec',
    '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-keyout', "$d/server.key",
    '-out', "$d/server.crt") == 0 or die "openssl req failed";

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;      # TLS: t/18-tls.t
    welby_token off;    # tokens: t/10-token.t

    welby_geoip2 country.mmdb asn=asn.mmdb;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        add_header X-Country $welby_country always;
        add_header X-ASN $welby_asn always;
        add_header X-Reason $welby_reason always;

        location /open/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /jp/ {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /deny/ {
            welby_geo_deny US;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /deny-strict/ {
            welby_geo_deny US;
            welby_geo_unknown deny;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # no list here: what it includes has one
        location /page/ {
            ssi on;
            ssi_types *;
            root %%TESTDIR%%/html;
        }

        location /mirror/ {
            mirror /jp/mirrored;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # a refusal is not turned into another answer
        location /jp-ep/ {
            welby_geo_allow JP;
            error_page 403 = /open/error-page;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /try/ {
            try_files /nonexistent @jp;
        }

        location @jp {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # the backend answers with X-Accel-Redirect: /jp/...
        location /xa/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /plain/ {
            welby off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # realip at the server: the proxy 127.0.0.1 and the inner proxies of
    # 127.0.4.0/24 are trusted, the chain walked from the right
    server {
        listen 127.0.0.1:%%PORT_8082%%;

        set_real_ip_from 127.0.0.1;
        set_real_ip_from 127.0.4.0/24;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;

        welby on;
        add_header X-Country $welby_country always;
        add_header X-Addr $remote_addr always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /jp/ {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the same without real_ip_recursive: the last address decides
    server {
        listen 127.0.0.1:%%PORT_8083%%;

        set_real_ip_from 127.0.0.1;
        set_real_ip_from 127.0.4.0/24;
        real_ip_header X-Forwarded-For;

        welby on;
        welby_geo_allow JP;
        add_header X-Country $welby_country always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # realip in one location only, for requests of one connection
    server {
        listen 127.0.0.1:%%PORT_8084%%;
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;

        welby on;
        add_header X-Country $welby_country always;

        location /rip/ {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Forwarded-For;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /jp/ {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the PROXY protocol, with realip taking its address
    server {
        listen 127.0.0.1:%%PORT_8085%% proxy_protocol;

        set_real_ip_from 127.0.0.1;
        real_ip_header proxy_protocol;

        welby on;
        welby_geo_allow JP;
        add_header X-Country $welby_country always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the PROXY protocol without realip: the proxy's address decides
    server {
        listen 127.0.0.1:%%PORT_8086%% proxy_protocol;

        welby on;
        welby_geo_allow JP;
        add_header X-Country $welby_country always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # a UNIX socket: no address, unless realip gives one
    server {
        listen unix:%%TESTDIR%%/unix.sock;

        welby on;
        add_header X-Country $welby_country always;

        location /jp/ {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /deny/ {
            welby_geo_deny US;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /rip/ {
            set_real_ip_from unix:;
            real_ip_header X-Forwarded-For;
            welby_geo_deny US;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # welby_geo_unknown is inherited like any nginx directive, apart
    # from the list it was written with
    server {
        listen 127.0.0.1:%%PORT_8087%%;

        welby on;
        welby_geo_deny CN;
        welby_geo_unknown allow;

        location /jp/ {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location /xa/ {
            add_header X-Accel-Redirect /jp/accel;
            return 200 "the backend's own answer\n";
        }

        location /plain/ {
            add_header X-Accel-Redirect /jp/accel-plain;
            return 200 "the backend's own answer\n";
        }

        location / {
            access_log %%TESTDIR%%/backend.log;
            js_content echo.echo;
        }
    }
}
EOF

$t->run();

sub get {
    my ($uri, $from, %o) = @_;
    return parse_response(http_req(uri => $uri,
        ($from ? (local => $from) : ()), %o));
}

sub status { $_[0] ? $_[0]->status : 0 }
sub hdr { $_[0] ? $_[0]->header($_[1]) // '' : 'no response' }
sub rec { $t->audit_record($_[0] && $_[0]->request_id) // {} }

# another nginx with the test map in both files and no token or TLS
# step, its http block's own lines (directives, servers) given, running
sub geo_instance {
    my ($http) = @_;
    my $n = Welby::Nginx->new();
    my $nd = $n->testdir();
    Welby::MMDB::country_db("$nd/country.mmdb");
    Welby::MMDB::asn_db("$nd/asn.mmdb");
    $n->write_file_expand('nginx.conf', "%%TEST_GLOBALS%%\n\n"
        . "events {}\n\n"
        . "http {\n"
        . "    %%TEST_GLOBALS_HTTP%%\n"
        . "    welby_tls off;\n"
        . "    welby_token off;\n\n"
        . "    welby_geoip2 country.mmdb asn=asn.mmdb;\n"
        . $http
        . "}\n");
    $n->run();
    return $n;
}

# the uri the echo backend answered for, or ''
sub echoed {
    my $j = $_[0] && $_[0]->json;
    return ref $j eq 'HASH' ? $j->{uri} // '' : '';
}

# through the trusted proxy 127.0.0.1, for an X-Forwarded-For value
sub via {
    my ($xff, $uri, $port) = @_;
    return get($uri // '/', undef, port => $port // $t->port(8082),
        headers => ["X-Forwarded-For: $xff"]);
}

###############################################################################
# subrequests: nginx runs no access phase for them, so a location's list
# must be part of what the main request's steps are shown to have checked

my $r = get('/page/inc.html', '127.0.1.5');
like($r ? $r->body : '', qr/"uri":"\/jp\/included"/,
    'SSI, control: a JP client\'s page includes the JP-only location');

$r = get('/page/inc.html', '127.0.2.5');
unlike($r ? $r->body : '', qr/"uri":"\/jp\/included"/,
    'SSI: a US client\'s page does not include the JP-only location');
is(rec($r)->{reason} // '', 'subrequest_unchecked',
    'SSI: the US page\'s record says subrequest_unchecked');

$r = get('/mirror/x', '127.0.2.5');
is(rec($r)->{reason} // '', 'subrequest_unchecked',
    'mirror: a US request\'s mirror into the JP-only location is refused');

# the record is written after the mirror subrequest ended
unlike($t->read_file('backend.log'), qr/\/jp\/mirrored/,
    'mirror: the backend never got the mirrored request');

###############################################################################
# IPv6 addresses that embed an IPv4 one: the IPv4 address is the one
# packets go back to, so it is the one placed

$r = via('2002:7f00:209::1', '/');
is(hdr($r, 'X-Country'), 'US',
    '6to4 2002:7f00:209::1: the country of 127.0.2.9, US');

# Teredo: 2001:0:<server>:<flags>:<port>:<client>, the client's address
# inverted.  The server's address is the client's free choice, and
# MaxMind's alias for 2001::/32 places it: here a JP server, 127.0.1.1,
# for a US client, 127.0.2.9.
my $teredo = '2001:0:7f00:101:0:0:80ff:fdf6';
$r = via($teredo, '/');
is(hdr($r, 'X-Country'), 'US',
    'Teredo: the client\'s address (127.0.2.9, US), not the server\'s (JP)');
$r = via($teredo, '/jp/x');
is(status($r), 403, 'Teredo: a US client behind a JP server is refused');

$r = via('64:ff9b::7f00:209', '/');
is(hdr($r, 'X-Country'), 'US',
    'NAT64 64:ff9b::127.0.2.9 (RFC 6052): US');

$r = via('::ffff:127.0.2.9', '/');
is(hdr($r, 'X-Country'), 'US', 'v4-mapped ::ffff:127.0.2.9: US');

###############################################################################
# what a database holds that is no country

$r = get('/open/x', '127.0.6.5');
is(hdr($r, 'X-Country'), '',
    'a record with "ZZ" (no ISO 3166 country): $welby_country is empty');
$r = get('/deny-strict/x', '127.0.6.5');
is(status($r), 403,
    '"ZZ" is unknown: a deny list with welby_geo_unknown deny refuses it');
ok(!exists rec($r)->{source}{country},
    '"ZZ": the audit record has no country');

$r = get('/deny/x', '127.0.7.5');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'a lowercase "us" in the file is US, refused by the deny list');

$r = get('/open/x', '127.0.8.5');
is(hdr($r, 'X-Country'), '',
    'only registered_country US: unknown, as README says');
$r = get('/jp/x', '127.0.8.5');
is(status($r), 403, 'only registered_country: an allow list refuses it');

###############################################################################
# internal redirects into a location with a list, and refusals that are
# not turned into anything else

$r = get('/jp-ep/x', '127.0.2.5');
is(status($r) . ' ' . ($r ? $r->reason_code // '' : ''), '403 geo_denied',
    'error_page 403 in the location: the refusal stays geo_denied');
is(echoed($r), '', 'error_page: the backend never answered');

$r = get('/try/x', '127.0.2.5');
is(status($r), 403, 'try_files into a named location with a list: refused');

$r = get('/xa/x', '127.0.2.5');
is(status($r) . ' ' . hdr($r, 'X-Reason'), '403 geo_denied',
    'X-Accel-Redirect into the JP-only location: refused');

$r = get('/plain/x', '127.0.2.5');
is(status($r), 403,
    'X-Accel-Redirect from a welby off location into the JP-only one: '
    . 'refused');

$r = get('/xa/x', '127.0.1.5');
is(echoed($r), '/jp/accel', 'X-Accel-Redirect, control: JP gets there');

###############################################################################
# realip chains (nginx's rules): the spoofed left of a chain never wins;
# without real_ip_recursive the nearest inner proxy decides

$r = via('127.0.1.9, 127.0.2.9', '/jp/x');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'XFF "JP-spoof, US-client" (recursive): the client US decides');
$r = via('127.0.2.9, 127.0.4.1', '/jp/x');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'XFF "US-client, trusted inner proxy" (recursive): US decides');
$r = via('127.0.2.9, 127.0.4.1', '/', $t->port(8083));
is(status($r) . ' ' . hdr($r, 'X-Country'), '200 JP',
    'the same without real_ip_recursive: the inner proxy (JP) decides');

###############################################################################
# one connection, requests from different addresses: realip in one
# location is undone when its request ends

my $raw = http("GET /rip/x HTTP/1.1\r\nHost: a\r\n"
    . "X-Forwarded-For: 127.0.2.9\r\n\r\n"
    . "GET /jp/x HTTP/1.1\r\nHost: a\r\n"
    . "X-Forwarded-For: 127.0.2.9\r\nConnection: close\r\n\r\n",
    port => $t->port(8084));
my @c = ($raw // '') =~ /^X-Country: (\S*)\r$/mg;
my @s = ($raw // '') =~ /^HTTP\/1\.1 (\d+)/mg;
is("@c", 'US JP',
    'keep-alive: the first request realip\'d to US, the second is the '
    . 'peer\'s JP');
is("@s", '200 200', 'keep-alive: both answered, the second not refused');

# and back: the peer's JP, a realip'd US, the peer's JP again (a country
# kept for the connection is of its address only)
$raw = http("GET /jp/x HTTP/1.1\r\nHost: a\r\n\r\n"
    . "GET /rip/x HTTP/1.1\r\nHost: a\r\n"
    . "X-Forwarded-For: 127.0.2.9\r\n\r\n"
    . "GET /jp/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    port => $t->port(8084));
@c = ($raw // '') =~ /^X-Country: (\S*)\r$/mg;
@s = ($raw // '') =~ /^HTTP\/1\.1 (\d+)/mg;
is("@c / @s", 'JP US JP / 200 200 200',
    'keep-alive: JP, then realip\'d US, then JP again, each its own');

# HTTP/2: streams of one connection
my $h2 = $t->port(8443);
my $out = `curl -sk --http2 --max-time 10 -o /dev/null -w '%{http_code} %{num_connects} %header{x-country}\\n' -H 'X-Forwarded-For: 127.0.2.9' https://127.0.0.1:$h2/rip/x --next -sk --http2 --max-time 10 -o /dev/null -w '%{http_code} %{num_connects} %header{x-country}\\n' https://127.0.0.1:$h2/jp/x 2>&1`;
is($out, "200 1 US\n200 0 JP\n",
    'HTTP/2: stream 1 realip\'d to US, stream 2 on the same connection '
    . '(0 new connects) is the peer\'s JP')
    or diag $out;

###############################################################################
# the PROXY protocol

sub proxied {
    my ($port, $src, $from) = @_;
    return parse_response(http("PROXY TCP4 $src 127.0.0.1 40000 80\r\n"
        . "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        port => $port, ($from ? (local => $from) : ())));
}

$r = proxied($t->port(8085), '127.0.2.7');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'PROXY protocol with realip: the header\'s source (US) decides');
$r = proxied($t->port(8085), '127.0.1.7');
is(status($r), 200, 'PROXY protocol with realip: JP passes');
$r = proxied($t->port(8085), '127.0.1.7', '127.0.2.1');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'PROXY protocol from an untrusted peer: its own country (US) decides');
$r = proxied($t->port(8086), '127.0.2.7');
is(status($r) . ' ' . hdr($r, 'X-Country'), '200 JP',
    'PROXY protocol without realip: the proxy\'s own country decides '
    . '(README: configure real_ip_header proxy_protocol)');

###############################################################################
# a UNIX socket

sub unix_get {
    my ($uri, @h) = @_;
    my $s = IO::Socket::UNIX->new(Peer => "$d/unix.sock") or return undef;
    print $s "GET $uri HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        . join('', map { "$_\r\n" } @h) . "\r\n";
    local $/;
    return parse_response(scalar <$s>);
}

$r = unix_get('/jp/x');
is(status($r), 403, 'UNIX socket: no address, unknown: an allow list refuses');
$r = unix_get('/deny/x');
is(status($r), 200, 'UNIX socket: a deny list lets unknown in, as README says');
$r = unix_get('/rip/x', 'X-Forwarded-For: 127.0.2.9');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'UNIX socket with set_real_ip_from unix:: the forwarded US is refused');

###############################################################################
# welby_geo_unknown across blocks

$r = get('/jp/x', '127.0.9.5', port => $t->port(8087));
is(status($r), 200,
    'welby_geo_unknown allow of the server holds for a location\'s own '
    . 'allow list (README: inherited as nginx inherits)');

###############################################################################
# nginx's early refusals: realip has not run, so the record's source is
# the peer, its address and its country together

$raw = http("GET /jp/x HTTP/1.1\r\nHost: bad/host\r\n"
    . "X-Forwarded-For: 127.0.2.9\r\nConnection: close\r\n\r\n",
    port => $t->port(8082));
$r = parse_response($raw);
is(status($r), 400, 'early refusal: a bad Host is nginx\'s 400');
my $src = rec($r)->{source} // {};
is(($src->{ip} // '') . ' ' . ($src->{country} // ''), '127.0.0.1 JP',
    'early refusal: the record\'s ip and country are both the peer\'s');

###############################################################################
# the cost: one lookup per request, whoever asks (the step, both
# variables, the audit record)

$r = get('/jp/x', '127.0.1.5');
my $id = $r && $r->request_id // '-';
my $log = $t->read_file('error.log');
my $n = () = $log =~ /welby: geo id:\Q$id\E country:/g;
is($n, 1, 'one country lookup for the step, $welby_country and the audit '
    . 'record');
$n = () = $log =~ /welby: geo id:\Q$id\E asn:/g;
is($n, 1, 'one ASN lookup for $welby_asn and the audit record');

###############################################################################
# nginx -t: a country database whose iso_code is not two letters would
# make every client unknown, and a deny list let all of them in

sub t_conf {
    my ($db) = @_;
    $t->write_file_expand('t.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    welby_geoip2 $db;
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        location / { welby on; welby_geo_deny US; return 204; }
    }
}
EOF
    return $t->test_config('t.conf');
}

Welby::MMDB::country_db("$d/alpha3.mmdb",
    map => { '127.0.1.0/24' => 'JPN', '127.0.2.0/24' => 'USA' });
my ($code, $msg) = t_conf("$d/alpha3.mmdb");
ok($code != 0 && $msg =~ /\[emerg\].*"\Q$d\E\/alpha3.mmdb" has a country.iso_code "JPN", not an ISO 3166-1 alpha-2 code: not a country database/,
    'nginx -t: alpha-3 iso_code fails') or diag $msg;

# type confusion
Welby::MMDB::country_db("$d/number.mmdb", map => { '127.0.1.0/24' => 392 },
    types => { iso_code => 'uint32' });
($code, $msg) = t_conf("$d/number.mmdb");
ok($code != 0 && $msg =~ /\[emerg\].*"\Q$d\E\/number.mmdb" has a country.iso_code that is not a string: not a country database/,
    'nginx -t: a number as iso_code fails') or diag $msg;

Welby::MMDB::country_db("$d/map.mmdb", map => {},
    records => { '127.0.1.0/24' => { country => { iso_code => { a => 'JP' } } } },
    types => { iso_code => 'map', a => 'utf8_string' });
($code, $msg) = t_conf("$d/map.mmdb");
ok($code != 0 && $msg =~ /\[emerg\].*"\Q$d\E\/map.mmdb" has a country.iso_code that is not a string/,
    'nginx -t: a map as iso_code fails') or diag $msg;

# metadata that lies about the tree: libmaxminddb walks the bits
# ip_version says, so either lie leaves every client unknown
sub ip_version_lie {
    my ($from, $to) = @_;
    my $b = $t->read_file($from);
    my $meta = rindex($b, "\xab\xcd\xefMaxMind.com");
    my $at = index($b, 'ip_version', $meta);
    substr($b, $at + 11, 1) = $to;      # after the uint16 control byte
    $t->write_file($to eq "\x06" ? 'v4-as-v6.mmdb' : 'v6-as-v4.mmdb', $b);
}

Welby::MMDB::country_db("$d/v4.mmdb", ip_version => 4,
    map => { '127.0.1.0/24' => 'JP', '127.0.2.0/24' => 'US' });
Welby::MMDB::country_db("$d/v6.mmdb");
ip_version_lie("$d/v4.mmdb", "\x06");
ip_version_lie("$d/v6.mmdb", "\x04");

($code, $msg) = t_conf("$d/v4-as-v6.mmdb");
ok($code != 0 && $msg =~ /\[emerg\].*"\Q$d\E\/v4-as-v6.mmdb" has no IPv4 network/,
    'nginx -t: an IPv4 tree whose metadata says IPv6 fails') or diag $msg;
($code, $msg) = t_conf("$d/v6-as-v4.mmdb");
ok($code != 0 && $msg =~ /\[emerg\].*"\Q$d\E\/v6-as-v4.mmdb" is corrupt: its search tree is deeper than its ip_version 4 allows/,
    'nginx -t: an IPv6 tree whose metadata says IPv4 fails') or diag $msg;

# IPv4 held only at ::ffff:0:0/96, not at ::/96 where readers look
Welby::MMDB::country_db("$d/mapped-only.mmdb", alias => 0,
    map => { '::ffff:127.0.1.0/120' => 'JP' });
($code, $msg) = t_conf("$d/mapped-only.mmdb");
ok($code != 0 && $msg =~ /\[emerg\].*"\Q$d\E\/mapped-only.mmdb" has no IPv4 network/,
    'nginx -t: an IPv6 file with IPv4 only under ::ffff:0:0/96 fails')
    or diag $msg;

###############################################################################
# the file under the running nginx: replaced by rename and reload, with
# other layouts (record_size 32, an IPv4-only tree)

my %V4 = map { $_ => $MAP{$_} } grep { !/:/ } keys %MAP;

Welby::MMDB::country_db("$d/country.mmdb", map => \%MAP, record_size => 32);
ok($t->reload(), 'reload: a record_size 32 file');
$r = get('/deny/x', '127.0.2.5');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'record_size 32: US found and refused');

Welby::MMDB::country_db("$d/country.mmdb", map => \%V4, ip_version => 4);
ok($t->reload(), 'reload: an IPv4-only file');
$r = get('/deny/x', '127.0.2.5');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'IPv4-only file: an IPv4 client found');
$r = via('::ffff:127.0.2.9', '/');
is(hdr($r, 'X-Country'), 'US', 'IPv4-only file: a v4-mapped address found');
$r = via('2002:7f00:209::1', '/');
is(hdr($r, 'X-Country'), 'US',
    'IPv4-only file: a 6to4 address is its IPv4 address too');
$r = via('::1', '/');
is(hdr($r, 'X-Country'), '', 'IPv4-only file: a native IPv6 one is unknown');

###############################################################################
# a record that does not decode, beyond the records nginx -t decodes:
# the lookup fails at run time, and the geo step fails closed

my %decoys;
for my $i (0 .. 4999) {
    $decoys{sprintf('127.%d.%d.0/24', 100 + int($i / 256), $i % 256)} =
        { country => { iso_code => 'JP', names => { en => "decoy $i" } } };
}
$decoys{'127.200.0.1/32'} =
    { aamarkerXMARK => 'x', country => { iso_code => 'US' } };
Welby::MMDB::country_db("$d/corrupt.mmdb", map => \%V4, records => \%decoys);

# the marker key's control byte made a number: a map key must be a string
my $bytes = $t->read_file("$d/corrupt.mmdb");
my $at = index($bytes, 'aamarkerXMARK');
substr($bytes, $at - 1, 1) = "\xa2";
$t->write_file('corrupt.tmp', $bytes);
rename "$d/corrupt.tmp", "$d/country.mmdb" or die "rename: $!";

ok($t->reload(), 'reload: a file whose record of 127.200.0.1 does not '
    . 'decode, past what nginx -t decodes');
$r = get('/deny/x', '127.200.0.1');
is(status($r) . ' ' . ($r ? $r->reason_code // '' : ''), '500 internal_error',
    'a lookup that fails: a deny list fails closed, 500 internal_error');
is(echoed($r), '', 'a lookup that fails: the backend never saw it');
$r = get('/open/x', '127.200.0.1');
is(status($r) . ' ' . hdr($r, 'X-Country'), '200 ',
    'a lookup that fails, no list: served, the country unknown');
$r = get('/deny/x', '127.0.2.5');
is(status($r), 403, 'the rest of the file still answers: US refused');

###############################################################################
# the file rewritten in place under the running workers (cp over it,
# curl -o, > file): they keep the copy they have, until a reload

Welby::MMDB::country_db("$d/country.mmdb", map => \%MAP);
ok($t->reload(), 'reload: the test map again');

open my $fh, '>', "$d/country.mmdb" or die "$!";
close $fh;
$r = get('/jp/x', '127.0.2.5');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'truncated in place: the workers answer as before');

Welby::MMDB::country_db("$d/us.mmdb", map => { '127.0.2.0/24' => 'JP' });
open $fh, '>', "$d/country.mmdb" or die "$!";
binmode $fh;
print $fh $t->read_file("$d/us.mmdb");
close $fh;
$r = get('/jp/x', '127.0.2.5');
is(status($r) . ' ' . hdr($r, 'X-Country'), '403 US',
    'rewritten in place: still the old answers');
ok($t->reload(), 'reload: the file rewritten in place');
$r = get('/jp/x', '127.0.2.5');
is(status($r) . ' ' . hdr($r, 'X-Country'), '200 JP',
    'after the reload: the new file\'s answer');

my @died = grep { /exited on signal/ } split /\n/, $t->read_file('error.log');
is(scalar @died, 0, 'no worker died') or diag join("\n", @died);

###############################################################################
# The failed lookup's [error] is asserted here: move exactly those lines
# to expected-errors.log, so that the teardown still checks the others.

$t->stop();
my (@keep, @moved);
for my $line (split /\n/, $t->read_file('error.log')) {
    if ($line =~ /\[error\].*welby: geo lookup in the country database "[^"]*country.mmdb" failed: .*client: 127\.200\.0\.1,/) {
        push @moved, $line;
    } else {
        push @keep, $line;
    }
}
is(scalar @moved, 2, 'each failed lookup logged one [error] line');
$t->write_file('expected-errors.log', join("\n", @moved, ''));
$t->write_file('error.log', join("\n", @keep, ''));

# without an audit trail and $welby_asn, nothing reads the ASN: the step
# looks up the country only
my $lazy = geo_instance(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_geo_allow JP;

        # content, not return: the pipeline runs in the access phase
        location / {
            js_content echo.echo;
        }

        location /asn/ {
            add_header X-ASN $welby_asn always;
            js_content echo.echo;
        }
    }
EOF

$r = parse_response(http_req(uri => '/x', local => '127.0.1.5',
    port => $lazy->port(8080)));
$id = $r && $r->request_id // '-';
$log = $lazy->read_file('error.log');
is(status($r) . ' ' . (() = $log =~ /welby: geo id:\Q$id\E country:JP/g),
    '200 1', 'lazy: the step looks up the country once');
is(() = $log =~ /welby: geo id:\Q$id\E asn:/g, 0,
    'lazy: and no ASN when nothing reads it');

$r = parse_response(http_req(uri => '/asn/x', local => '127.0.1.5',
    port => $lazy->port(8080)));
$id = $r && $r->request_id // '-';
$log = $lazy->read_file('error.log');
is(hdr($r, 'X-ASN') . ' ' . (() = $log =~ /welby: geo id:\Q$id\E asn:/g),
    '64501 1', 'lazy: $welby_asn looks it up, once');

# one connection, four requests from an address not seen before: the
# first looks it up, the others take the connection's answer; $welby_asn
# looks up the ASN once
$raw = http("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    . "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    . "GET /asn/x HTTP/1.1\r\nHost: a\r\n\r\n"
    . "GET /asn/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    port => $lazy->port(8080), local => '127.0.1.9');
my @ids = ($raw // '') =~ /^X-Request-Id: (\S+)\r$/mg;
my @asn = ($raw // '') =~ /^X-ASN: (\S*)\r$/mg;
$log = $lazy->read_file('error.log');
my @how = map {
    my $id = $_;
    $log =~ /welby: geo id:\Q$id\E country:JP as the connection's/
        ? 'kept' : $log =~ /welby: geo id:\Q$id\E country:JP$/m
        ? 'looked' : 'none'
} @ids;
is("@how", 'looked kept kept kept',
    'keep-alive: the first request looks up the country, the others take '
    . 'the connection\'s');
is(join(' ', map { my $id = $_; scalar(() = $log =~
    /welby: geo id:\Q$id\E asn:/g) } @ids) . " / @asn", '0 0 1 0 / 64501 64501',
    'keep-alive: the ASN looked up once, by the first $welby_asn, and kept');
$lazy->stop();

# the ASN is read before realip changes the address (the throttle's
# asn= check in the first location), and again after it (the audit
# record): it is the new address's, as its country is
my $ra = geo_instance(<<'EOF');
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_zone threat 1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;

        location /first/ {
            welby_auth_throttle zone=threat failures=3/1m ban=1s asn=3/1m;
            try_files /nonexistent @second;
        }

        location @second {
            set_real_ip_from 127.0.0.0/8;
            real_ip_header X-Forwarded-For;
            js_content echo.echo;
        }
    }
EOF

for my $case (['127.0.2.7', '127.0.2.7', 'an IPv4 address'],
              ['2002:7f00:207::1', '2002:7f00:207::1', 'a 6to4 address'],
              # Teredo: the server 127.0.1.1 (AS64501), the client
              # 127.0.2.7 (its bits inverted), which places it
              ['2001:0:7f00:101::80ff:fdf8', '2001:0:7f00:101::80ff:fdf8',
               'a Teredo address'])
{
    my ($xff, $ip, $what) = @$case;
    $r = parse_response(http_req(uri => '/first/x', local => '127.0.1.5',
        port => $ra->port(8080), headers => ["X-Forwarded-For: $xff"]));
    $id = $r && $r->request_id // '-';
    $log = $ra->read_file('error.log');
    my $looked = () = $log =~ /welby: geo id:\Q$id\E asn:/g;
    my $s = ($r && $ra->audit_record($r->request_id) // {})->{source} // {};
    is(join(' ', status($r), $looked,
            $s->{ip} // '-', $s->{country} // '-', $s->{asn} // '-'),
        "200 2 $ip US 64502",
        "realip after the ASN was read ($what): the record's ASN is the "
        . 'new address\'s, as its country');
}
$ra->stop();

$t->done_testing();
