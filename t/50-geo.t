#!/usr/bin/perl

# The geo step (welby_geoip2, welby_geo_allow, welby_geo_deny,
# welby_geo_unknown): requests from chosen source addresses in 127/8,
# which the test databases (t/lib/Welby/MMDB.pm) place in JP, US, DE or
# nowhere; $welby_country and $welby_asn; the audit record's source;
# realip in front; IPv6 and v4-mapped IPv6 clients.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use JSON::XS ();
use Welby::Nginx qw(http_req parse_response);
use Welby::MMDB;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

# Without the ::ffff:0:0/96 alias of MaxMind's files: a v4-mapped client
# is found only if the module looks it up as IPv4 itself.
Welby::MMDB::country_db("$d/country.mmdb", alias => 0);
Welby::MMDB::asn_db("$d/asn.mmdb", alias => 0);

my $v6 = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0,
    Listen => 1) ? 1 : 0;
my $mapped = IO::Socket::IP->new(LocalHost => '::ffff:127.0.0.1',
    LocalPort => 0, Listen => 1, V6Only => 0) ? 1 : 0;

my $conf = <<'EOF';
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;      # TLS: t/18-tls.t
    welby_token off;    # tokens: t/10-token.t

    welby_geoip2 %%TESTDIR%%/country.mmdb asn=%%TESTDIR%%/asn.mmdb;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_alert geo_denied 3/1h;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        %%LISTEN_V6%%
        %%LISTEN_MAPPED%%

        welby on;
        add_header X-Country $welby_country always;
        add_header X-ASN $welby_asn always;
        add_header X-Reason $welby_reason always;
        add_header X-Decision $welby_decision always;
        add_header X-Addr $remote_addr always;

        location /allow/ {
            welby_geo_allow JP;
            welby_geo_allow DE;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /jp/ {
            welby_geo_allow jp;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /deny/ {
            welby_geo_deny US;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /allow-unknown/ {
            welby_geo_allow JP;
            welby_geo_unknown allow;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /deny-unknown/ {
            welby_geo_deny US;
            welby_geo_unknown deny;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby_mode detect;
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /open/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # a list at the server level, inherited whole or replaced whole
    server {
        listen 127.0.0.1:%%PORT_8082%%;

        welby on;
        welby_geo_deny US;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /jp/ {
            welby_geo_allow JP;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /off/ {
            welby_geo_allow off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # a proxy at 127.0.0.1 in front, whose X-Forwarded-For realip trusts
    server {
        listen 127.0.0.1:%%PORT_8083%%;

        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        welby on;
        welby_geo_allow JP;
        add_header X-Country $welby_country always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # the address changes between two locations of one request: realip
    # only in the one an internal redirect leads to
    server {
        listen 127.0.0.1:%%PORT_8087%%;

        welby on;
        welby_geo_allow JP;
        add_header X-Country $welby_country always;

        location /first/ {
            try_files /nonexistent @second;
        }

        location @second {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Forwarded-For;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # no welby here: the variables still answer
    server {
        listen 127.0.0.1:%%PORT_8084%%;

        location / {
            return 200 "country=$welby_country asn=$welby_asn\n";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$conf =~ s/%%LISTEN_V6%%/$v6 ? 'listen [::1]:%%PORT_8085%%;' : ''/e;
$conf =~ s/%%LISTEN_MAPPED%%/$mapped
    ? 'listen [::ffff:127.0.0.1]:%%PORT_8086%% ipv6only=off;' : ''/e;
$t->write_file_expand('nginx.conf', $conf);

$t->run()->plan(67);

sub get {
    my ($uri, $from, %o) = @_;
    return parse_response(http_req(uri => $uri,
        ($from ? (local => $from) : ()), %o));
}

sub status { $_[0] ? $_[0]->status : 0 }
sub hdr { $_[0] ? $_[0]->header($_[1]) // '' : 'no response' }
sub rec { $t->audit_record($_[0] && $_[0]->request_id) // {} }

sub alerts {
    return grep { $_->{alert} && $_->{alert}{event} eq 'geo_denied' }
        map { JSON::XS->new->decode($_) }
        split /\n/, $t->read_file('audit.log');
}

###############################################################################
# what the alert counts: refused and detected requests, not allowed ones
# (first, before the other refusals count)

my $r1 = get('/allow/a', '127.0.2.11');
my $r2 = get('/detect/a', '127.0.2.12');
get('/allow/a', '127.0.1.11');
my $r4 = get('/allow/a', '127.0.1.12');

# one worker: once the fourth request's record is written, the log phase
# of the three before it (where alerts are counted) is over
rec($r4);
is(scalar(alerts()), 0,
    'alert: one refusal, one detection, two allowed: under 3, no alert');

my $r5 = get('/allow/a', '127.0.9.11');
my @a;
$t->wait_for(sub { @a = alerts(); @a });
is(scalar @a, 1, 'alert: the third refusal or detection raises one alert');
is($a[0] && $a[0]{alert}{count}, 3, 'alert: it counts 3');

###############################################################################
# an allow list: only the countries it names; unknown is refused

my $r = get('/allow/x', '127.0.1.5');
is(status($r), 200, 'allow list: JP (127.0.1.5) passes');
is(hdr($r, 'X-Country'), 'JP', 'allow list: $welby_country JP');
is(hdr($r, 'X-ASN'), '64501', 'allow list: $welby_asn 64501');

$r = get('/allow/x', '127.0.3.5');
is(status($r), 200, 'allow list: DE (127.0.3.5, the second line) passes');

$r = get('/allow/x', '127.0.2.5');
is(status($r), 403, 'allow list: US (127.0.2.5) is refused 403');
is($r && $r->reason_code, 'geo_denied',
    'allow list: the OperationOutcome says geo_denied');
is(hdr($r, 'X-Reason'), 'geo_denied', 'allow list: $welby_reason geo_denied');
is(hdr($r, 'X-Country'), 'US', 'allow list: the refusal has $welby_country');
my $us = $r;

$r = get('/allow/x', '127.0.9.5');
is(status($r), 403, 'allow list: an unknown country (127.0.9.5) is refused');
is(hdr($r, 'X-Country') . hdr($r, 'X-ASN'), '',
    'unknown: $welby_country and $welby_asn are empty');
my $unknown = $r;

$r = get('/allow/x');
is(status($r), 200, 'allow list: the tests\' own 127.0.0.1 is JP');
is(hdr($r, 'X-ASN'), '64500', '127.0.0.1 is AS64500');

$r = get('/jp/x', '127.0.1.5');
is(status($r), 200, 'allow list in lowercase: jp is JP');
$r = get('/jp/x', '127.0.3.5');
is(status($r), 403, 'allow list JP: DE is refused');

###############################################################################
# a deny list: all but the countries it names; unknown passes

$r = get('/deny/x', '127.0.2.5');
is(status($r), 403, 'deny list: US is refused');
is($r && $r->reason_code, 'geo_denied', 'deny list: geo_denied');
$r = get('/deny/x', '127.0.1.5');
is(status($r), 200, 'deny list: JP passes');
$r = get('/deny/x', '127.0.9.5');
is(status($r), 200, 'deny list: an unknown country passes');

###############################################################################
# welby_geo_unknown overrides what the list's kind implies

$r = get('/allow-unknown/x', '127.0.9.5');
is(status($r), 200, 'allow list, unknown allow: unknown passes');
$r = get('/allow-unknown/x', '127.0.2.5');
is(status($r), 403, 'allow list, unknown allow: US is still refused');
$r = get('/deny-unknown/x', '127.0.9.5');
is(status($r), 403, 'deny list, unknown deny: unknown is refused');
$r = get('/deny-unknown/x', '127.0.1.5');
is(status($r), 200, 'deny list, unknown deny: JP passes');

###############################################################################
# no list: nobody refused, the variables still set

$r = get('/open/x', '127.0.2.5');
is(status($r), 200, 'no list: US passes');
is(hdr($r, 'X-Country') . ' ' . hdr($r, 'X-ASN'), 'US 64502',
    'no list: $welby_country US, $welby_asn 64502');

###############################################################################
# detect mode: recorded, let through

$r = get('/detect/x', '127.0.2.5');
is(status($r), 200, 'detect: US passes');
is(hdr($r, 'X-Decision') . ' ' . hdr($r, 'X-Reason'), 'detect geo_denied',
    'detect: $welby_decision detect, $welby_reason geo_denied');
is(rec($r)->{reason}, 'geo_denied', 'detect: the record has geo_denied');

###############################################################################
# the audit record's source

my $rec = rec($us);
is($rec->{source}{country}, 'US', 'audit: source.country US');
is($rec->{source}{asn}, 64502, 'audit: source.asn 64502, a number');
is($rec->{source}{ip}, '127.0.2.5', 'audit: of the address it came from');
is($rec->{reason}, 'geo_denied', 'audit: reason geo_denied');

$rec = rec($unknown);
ok($rec->{source} && !exists $rec->{source}{country}
    && !exists $rec->{source}{asn},
    'audit: an unknown address has no country and no asn')
    or diag explain $rec->{source};

$rec = rec($r4);
is(($rec->{source}{country} // '') . ' ' . ($rec->{source}{asn} // ''),
    'JP 64501', 'audit: an allowed request has its country and asn too');

my $id = $us->request_id;
ok(grep({ /\[notice\] .*welby: refused id:\Q$id\E step:geo reason:geo_denied/ }
        split /\n/, $t->read_file('error.log')),
    'error log: the refusal at notice, step geo');

###############################################################################
# inherited lists: a block with its own list replaces the whole list

my $p = $t->port(8082);
$r = get('/x', '127.0.2.5', port => $p);
is(status($r), 403, 'server deny US, inherited: US is refused');
$r = get('/x', '127.0.3.5', port => $p);
is(status($r), 200, 'server deny US, inherited: DE passes');
$r = get('/jp/x', '127.0.3.5', port => $p);
is(status($r), 403, 'location allow JP replaces it: DE is refused');
$r = get('/jp/x', '127.0.1.5', port => $p);
is(status($r), 200, 'location allow JP: JP passes');
$r = get('/jp/x', '127.0.9.5', port => $p);
is(status($r), 403, 'location allow JP: unknown refused, as for its kind');
$r = get('/off/x', '127.0.2.5', port => $p);
is(status($r), 200, 'welby_geo_allow off: the inherited list is gone');

###############################################################################
# realip: the forwarded address decides, when the proxy is trusted

$p = $t->port(8083);
$r = get('/x', undef, port => $p,
    headers => ['X-Forwarded-For: 127.0.2.7']);
is(status($r), 403, 'realip: forwarded for US, refused');
is(hdr($r, 'X-Country'), 'US', 'realip: $welby_country of the forwarded');
$rec = rec($r);
is(($rec->{source}{ip} // '') . ' ' . ($rec->{source}{country} // '')
    . ' ' . ($rec->{source}{asn} // ''), '127.0.2.7 US 64502',
    'realip: the record\'s ip, country and asn are the forwarded address\'s');

$r = get('/x', undef, port => $p,
    headers => ['X-Forwarded-For: 127.0.1.7']);
is(status($r), 200, 'realip: forwarded for JP, allowed');
is(hdr($r, 'X-Country'), 'JP', 'realip: $welby_country JP');

$r = get('/x', '127.0.2.1', port => $p,
    headers => ['X-Forwarded-For: 127.0.1.7']);
is(status($r), 403,
    'realip: an untrusted peer\'s X-Forwarded-For is not believed');
is(hdr($r, 'X-Country'), 'US', 'realip: its own country (US) counts');

$r = get('/x', undef, port => $p,
    headers => ['X-Forwarded-For: 127.0.9.3']);
is(status($r), 403, 'realip: forwarded for an unknown address, refused');

###############################################################################
# looked up again when the address changes within one request

$r = get('/first/x', undef, port => $t->port(8087),
    headers => ['X-Forwarded-For: 127.0.2.9']);
is(status($r), 403,
    'redirect: 127.0.0.1 (JP) passed /first/, realip in @second makes it '
    . 'US: refused');
is(hdr($r, 'X-Country'), 'US', 'redirect: $welby_country of the new address');

###############################################################################
# the variables outside welby

$r = get('/x', '127.0.2.5', port => $t->port(8084));
is($r && $r->body, "country=US asn=64502\n",
    'no welby: $welby_country and $welby_asn still answer');
$r = get('/x', '127.0.9.5', port => $t->port(8084));
is($r && $r->body, "country= asn=\n", 'no welby: unknown, both empty');

###############################################################################
# IPv6

sub get6 {
    my ($port, $uri) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port,
        Timeout => 10) or return undef;
    print $s "GET $uri HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\n\r\n";
    local $/;
    my $raw = <$s>;
    return parse_response($raw);
}

SKIP: {
    skip 'no ::1 on this machine', 6 unless $v6;

    $r = get6($t->port(8085), '/allow/x');
    is(status($r), 200, 'IPv6: ::1 (DE) passes JP DE');
    is(hdr($r, 'X-Addr'), '::1', 'IPv6: the client is ::1');
    is(hdr($r, 'X-Country'), 'DE', 'IPv6: $welby_country DE');
    is(hdr($r, 'X-ASN'), '64510', 'IPv6: $welby_asn 64510');
    is(rec($r)->{source}{country}, 'DE', 'IPv6: the record says DE');

    $r = get6($t->port(8085), '/jp/x');
    is(status($r), 403, 'IPv6: ::1 (DE) is refused by JP only');
}

SKIP: {
    skip 'no v4-mapped IPv6 sockets on this machine', 5 unless $mapped;

    my $pm = $t->port(8086);
    $r = get('/open/x', '127.0.2.5', port => $pm);
    is(hdr($r, 'X-Addr'), '::ffff:127.0.2.5',
        'v4-mapped: a dual-stack listener sees ::ffff:127.0.2.5');
    is(hdr($r, 'X-Country'), 'US',
        'v4-mapped: looked up as 127.0.2.5 (US), without the alias');
    is(hdr($r, 'X-ASN'), '64502', 'v4-mapped: its ASN too');

    $r = get('/jp/x', '127.0.2.5', port => $pm);
    is(status($r), 403, 'v4-mapped: US is refused by JP only');
    $r = get('/jp/x', '127.0.1.5', port => $pm);
    is(status($r), 200, 'v4-mapped: JP passes');
}

###############################################################################
# one alert per window: the refusals since did not raise another

$r = get('/open/x');
rec($r);
is(scalar(alerts()), 1, 'alert: still one in its 1 h window');
