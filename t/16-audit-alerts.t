#!/usr/bin/perl

# Threshold alerts (welby_alert) and the FHIR AuditEvent form of the audit
# trail (welby_audit_log ... format=fhir).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Time::HiRes qw(sleep);
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_audit_log %%TESTDIR%%/audit.log;
    welby_audit_log %%TESTDIR%%/fhir.log format=fhir;

    welby_alert auth_failures 3/2s;
    welby_alert auth_failures_per_ip 2/1m;
    welby_alert reason:method_not_allowed 2/1m severity=warning;
    welby_alert upstream_5xx 1/1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /down/ {
            welby on;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /open/ {
            welby on;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run()->plan(14);

sub alerts {
    my ($event) = @_;
    return grep { $_->{alert} && $_->{alert}{event} eq $event }
        map { JSON::XS->new->decode($_) }
        split /\n/, $t->read_file('audit.log');
}

http_req(uri => '/Patient/p1') for 1 .. 5;

my @a = alerts('auth_failures');
is(scalar @a, 1, 'five auth failures, threshold 3: one alert record');
is($a[0] && $a[0]{alert}{count}, 3, 'it fired at the third');
is($a[0] && "$a[0]{category}/$a[0]{severity}", 'event/alert',
    'category event, default severity alert');

@a = alerts('auth_failures_per_ip');
is(scalar @a, 1, 'per address, threshold 2: one alert record');
is($a[0] && $a[0]{alert}{key}, '127.0.0.1', 'naming the address');

sleep 2.1;
http_req(uri => '/Patient/p1') for 1 .. 3;
is(scalar(alerts('auth_failures')), 2,
    'after the 2 s window passed, three more fire it again');
is(scalar(alerts('auth_failures_per_ip')), 1,
    'the 1 min per-address window has not passed: no second alert');

http_req(uri => '/open/x', method => 'PROPFIND') for 1 .. 3;
@a = alerts('reason:method_not_allowed');
is(scalar @a, 1, 'reason:method_not_allowed: one alert');
is($a[0] && $a[0]{severity}, 'warning', 'with the configured severity');

http_req(uri => '/down/x');
is(scalar(alerts('upstream_5xx')), 1, 'a 502 from the backend: one alert');

like($t->read_file('error.log'), qr/\[warn\] .*welby: alert auth_failures: 3/,
    'the alert is also in the error log, at warn');

# the FHIR form

my $r = parse_response(http_req(uri => '/open/x?name=Secret'));
my ($line) = grep { /\Q${\ $r->header('X-Request-Id')}\E/ }
    split /\n/, $t->read_file('fhir.log');
my $ev = eval { JSON::XS->new->decode($line // '') } || {};
is("$ev->{resourceType}/$ev->{action}/$ev->{outcome}", 'AuditEvent/R/0',
    'format=fhir: an AuditEvent, action R, outcome 0 (success)');
unlike($t->read_file('fhir.log'), qr/Secret/, 'format=fhir: no query value');

my $out = `$FindBin::Bin/../conf/audit-verify $d/fhir.log $d/audit.log 2>&1`;
is($? >> 8, 0, 'both files, alerts included, verify') or diag $out;
