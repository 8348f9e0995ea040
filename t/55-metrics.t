#!/usr/bin/perl

# The metrics page (welby_metrics): valid text exposition format, by a
# strict reader (t/lib/Welby/Prom.pm) and by promtool check metrics; its
# counters equal what was sent, request by request, over two workers that
# both served; they survive reloads, one of which changes worker_processes
# and moves it after http{}; the page's methods, its access control, and
# the directive's nginx -t errors.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IPC::Open3 qw(open3);
use Symbol qw(gensym);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);
use Welby::Prom qw(prom_parse prom_value prom_sum prom_series);

BAIL_OUT('/dev/full is missing: the held audit records need it')
    unless -c '/dev/full';
BAIL_OUT('promtool is missing: make test installs prometheus')
    unless -x '/usr/bin/promtool';

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS = 'https://issuer.test';
my $AUD = 'https://fhir.test';

my $key = gen_key('ES256', kid => 'k1');
my $other = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

$t->write_file('rules.conf', <<'EOF');
SecRuleEngine On
SecRule ARGS "@contains attack" "id:440100,phase:1,deny,log"
EOF

my $CONF = <<'EOF';
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    log_format pid '$pid $uri';
    access_log %%TESTDIR%%/pids.log pid;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_token_cache zone=tokens:1m;
    welby_zone keyed 64k;
    welby_zone "odd\"name\\ \t東京\n" 32k;
    welby_waf_rules %%TESTDIR%%/rules.conf;

    welby_audit_log %%TESTDIR%%/audit.log;
    welby_audit_log /dev/full;

    welby_alert auth_failures 3/1h;
    welby_alert auth_failures_per_ip 3/1h;
    welby_alert reason:method_not_allowed 2/1h;

    server {
        # reuseport: the kernel spreads the connections over both workers
        listen 127.0.0.1:%%PORT_8080%% reuseport;

        location /open/ {
            welby on;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /api/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /fhir/ {
            welby on;
            welby_fhir_base /fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /waf/ {
            welby on;
            welby_token off;
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # the backend's 503, answered as a 200 of the gateway's
        location /fail/ {
            welby on;
            welby_token off;
            proxy_intercept_errors on;
            error_page 503 = @fallback;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location @fallback {
            return 200 "fallback\n";
        }

        location /down/ {
            welby on;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        # the operator's choice: open to anyone who reaches the port
        location = /metrics {
            welby_metrics;
        }

        # as README recommends
        location = /metrics-local {
            welby_metrics;
            allow 127.0.0.1;
            deny all;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
        location /fail/ { return 503; }
    }
}
EOF

my $conf = $CONF;
$conf =~ s/%%TEST_GLOBALS%%/%%TEST_GLOBALS%%\n#GLOBALS_END/;
$t->write_file_expand('nginx.conf', $conf);
my $written = $t->read_file('nginx.conf');
$written =~ s/^worker_processes 1;$/worker_processes 2;/m
    or die "no worker_processes line in the test globals\n";
$t->write_file('nginx.conf', $written);

$t->run()->plan(65);

sub token { jwt(key => $_[0], set => { iss => $ISS, aud => $AUD, @_[1 .. $#_] }) }

sub get {
    my ($uri, %o) = @_;
    return parse_response(http_req(uri => $uri, %o));
}

sub page {
    my (%o) = @_;
    return get($o{uri} // '/metrics', %o);
}

# what the page says, once every request sent so far is in it: the log
# phase runs after the response, so the page is read until its totals
# reach the expectation (or the deadline passes)
sub settled {
    my ($requests) = @_;
    my $p;
    $t->wait_for(sub {
        my $r = page();
        $p = prom_parse($r->body);
        return prom_sum($p, 'welby_requests_total') == $requests
            && (prom_value($p, 'welby_request_duration_seconds_count')
                // -1) == $requests;
    });
    return $p;
}

sub promtool {
    my ($text) = @_;
    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, '/usr/bin/promtool', 'check',
        'metrics');
    print $in $text;
    close $in;
    my $said = join '', <$out>, <$err>;
    waitpid($pid, 0);
    return ($? >> 8, $said);
}

###############################################################################

# the strict reader rejects what it must (so that "no error" means
# something)

my %broken = (
    'a bucket below the one before it' =>
        "# HELP h_seconds x\n# TYPE h_seconds histogram\n"
        . "h_seconds_bucket{le=\"1\"} 2\nh_seconds_bucket{le=\"+Inf\"} 1\n"
        . "h_seconds_sum 1\nh_seconds_count 1\n",
    '+Inf not equal to _count' =>
        "# HELP h_seconds x\n# TYPE h_seconds histogram\n"
        . "h_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 1\n"
        . "h_seconds_count 3\n",
    'two TYPE lines' =>
        "# HELP a_total x\n# TYPE a_total counter\n# TYPE a_total counter\n"
        . "a_total 1\n",
    'an invalid escape' =>
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"\\x\"} 1\n",
    'a counter not named _total' =>
        "# HELP a x\n# TYPE a counter\na 1\n",
    'a family resumed' =>
        "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"1\"} 1\n"
        . "# HELP b x\n# TYPE b gauge\nb 1\na_total{l=\"2\"} 1\n",
    'no LF at the end' => "# HELP b x\n# TYPE b gauge\nb 1",
);

for my $what (sort keys %broken) {
    ok(scalar @{ prom_parse($broken{$what})->{errors} },
        "the reader finds $what");
}

###############################################################################

my $p = prom_parse(page()->body);
is(prom_sum($p, 'welby_requests_total'), 0, 'at start: no request counted');

# A: allowed, no token needed
get('/open/x') for 1 .. 7;

# B: no token: token_missing, five auth failures: both auth_failures
# rules fire at the third, once each (window 1 h)
get('/api/x') for 1 .. 5;

# C: method_not_allowed three times: its alert fires at the second
get('/open/x', method => 'PROPFIND') for 1 .. 3;

# D: a valid token three times: verified twice (the second stores it),
# found in the cache the third time
my $t1 = token($key, jti => 'metrics-d');
get('/api/x', headers => ["Authorization: Bearer $t1"]) for 1 .. 3;

# E: a token signed by another key of the same kid: token_signature
my $bad = token($other, jti => 'metrics-e');
get('/api/x', headers => ["Authorization: Bearer $bad"]) for 1 .. 2;

# F: p1's token reading p2 (the policy refuses) twice, then p1 (allowed,
# from the cache)
my $t2 = token($key, jti => 'metrics-f', scope => 'patient/*.rs',
    patient => 'p1');
my @f = map { get($_, headers => ["Authorization: Bearer $t2"])->status }
    '/fhir/Patient/p2', '/fhir/Patient/p2', '/fhir/Patient/p1';

# G: the WAF refuses twice
get('/waf/x?q=attack') for 1 .. 2;

# H: the backend answers 503, error_page answers 200 instead; I: no
# backend, nginx answers 502
my $h = get('/fail/x')->status;
my $i = get('/down/x')->status;

is("@f $h $i", '403 403 200 200 502',
    'the policy refused p2 twice and let p1 through; the 503 answered as '
    . '200; the 502');

my $N = 7 + 5 + 3 + 3 + 2 + 3 + 2 + 1 + 1;
$p = settled($N);

is_deeply($p->{errors}, [], 'the page parses, strictly')
    or diag(join "\n", @{ $p->{errors} });

my ($rc, $said) = promtool(page()->body);
is($rc, 0, 'promtool check metrics accepts the page') or diag($said);
is($said, '', 'promtool check metrics has nothing to say about it');

my @pids = keys %{{ map { /^(\d+) / ? ($1 => 1) : () }
    split /\n/, $t->read_file('pids.log') }};
is(scalar @pids, 2, 'both workers served requests');

# the refusal reasons, as welby_reason.h lists them
my @codes = $t->read_file("$FindBin::Bin/../ngx_welby_module/welby_reason.h")
    =~ /^\s+X\(\w+, "([a-z_0-9]+)"/mg;

my $requests = prom_series($p, 'welby_requests_total');
is(join(' ', sort map { /^decision="deny",reason="(.*)"$/ ? $1 : () }
    keys %$requests), join(' ', sort @codes),
    'welby_requests_total: every refusal reason (' . @codes . ') shown, at 0 '
    . 'before its first');
is_deeply({ map { $requests->{$_} ? ($_ => $requests->{$_}) : () }
    keys %$requests }, {
    'decision="allow",reason="none"' => 13,
    'decision="deny",reason="token_missing"' => 5,
    'decision="deny",reason="method_not_allowed"' => 3,
    'decision="deny",reason="token_signature"' => 2,
    'decision="deny",reason="patient_mismatch"' => 2,
    'decision="deny",reason="waf_block"' => 2,
}, 'welby_requests_total: every request, once, by decision and reason');

is_deeply(prom_series($p, 'welby_responses_total'), {
    'code="1xx"' => 0, 'code="2xx"' => 12, 'code="3xx"' => 0,
    'code="4xx"' => 14, 'code="5xx"' => 1,
}, 'welby_responses_total by status class: the answers sent');

is_deeply(prom_series($p, 'welby_upstream_responses_total'), {
    'code="1xx"' => 0, 'code="2xx"' => 11, 'code="3xx"' => 0,
    'code="4xx"' => 0, 'code="5xx"' => 2,
}, 'welby_upstream_responses_total: the backend\'s 503 (answered as 200) '
    . 'and nginx\'s 502 for the backend that is not there');

is(prom_value($p, 'welby_request_duration_seconds_count'), $N,
    'the histogram counts every request');
is(prom_value($p, 'welby_request_duration_seconds_bucket', le => '+Inf'),
    $N, 'its +Inf bucket too');
cmp_ok(prom_value($p, 'welby_request_duration_seconds_bucket', le => '10'),
    '==', $N, 'none of them took over 10 s');

is_deeply(prom_series($p, 'welby_token_verifications_total'), {
    'result="valid"' => 4, 'result="invalid"' => 2,
}, 'token signatures checked: twice for each valid token, once per bad one');

is_deeply(prom_series($p, 'welby_token_cache_lookups_total'), {
    'result="hit"' => 2, 'result="miss"' => 6,
}, 'token cache: each valid token found the third time');

is_deeply(prom_series($p, 'welby_policy_refusals_total'), {
    'reason="patient_mismatch"' => 2,
}, 'policy refusals by reason');

is_deeply(prom_series($p, 'welby_waf_blocks_total'), {
    'phase="request"' => 2, 'phase="response"' => 0,
}, 'WAF blocks');

my $alerts = prom_series($p, 'welby_alerts_total');
is($alerts->{'event="auth_failures"'}, 2,
    'alerts: auth_failures and auth_failures_per_ip, under one event');
is($alerts->{'event="reason:method_not_allowed"'}, 1,
    'alerts: reason:method_not_allowed');
is(scalar(grep { $_ } values %$alerts), 2, 'no other alert counted');

my $records = () = $t->read_file('audit.log') =~ /\n/g;
is($records, $N + 3, 'the audit file has a record per request and alert');
is_deeply(prom_series($p, 'welby_audit_records_total'), {
    'result="written"' => $N + 3, 'result="held"' => $N + 3,
    'result="failed"' => 0,
}, 'audit records: the file\'s written, /dev/full\'s held in memory');

is_deeply(prom_series($p, 'welby_detections_total'), {
    map { ("detector=\"$_\"" => 0) } qw(rate_limited geo_denied
        auth_throttled enumeration impossible_travel)
}, 'detections: every detector shown, none found');

is(prom_value($p, 'welby_build_info', nginx_version => '1.22.1',
    audit_schema => '1'), 1, 'build info');

my $size = prom_series($p, 'welby_zone_size_bytes');
my $used = prom_series($p, 'welby_zone_used_bytes');
# the name as nginx read it: a quote, a backslash, a tab, Tokyo in
# kanji, a LF; the page writes the tab as the text \x09
my $odd = "odd\"name\\ \\x09\xe6\x9d\xb1\xe4\xba\xac\n";
is($size->{qq{zone="$odd"}}, 32768,
    'a zone name with a quote, a backslash, a tab, UTF-8 and a LF: escaped, '
    . 'read back');
delete $size->{qq{zone="$odd"}};
delete $used->{qq{zone="$odd"}};

is(join(' ', sort keys %$size),
    'zone="keyed" zone="tokens" zone="welby_alerts" zone="welby_metrics"',
    'zone sizes: a welby_zone, the token cache, the alerts\' and the '
    . 'metrics\' zone');
is($size->{'zone="tokens"'}, 1048576, 'the token cache as configured, 1m');
is($size->{'zone="keyed"'}, 65536, 'the welby_zone as configured, 64k');
is_deeply(prom_series($p, 'welby_zone_evictions_total'), {
    'zone="keyed"' => 0, qq{zone="$odd"} => 0 },
    'evictions: of the welby_zones, none');
is(join(' ', sort keys %$used), join(' ', sort keys %$size),
    'zone use: the same zones');
ok(!grep({ $used->{$_} <= 0 || $used->{$_} > $size->{$_} } keys %$size),
    'every zone uses more than nothing and no more than its size');

my $r = page();
is($r->header('Content-Type'), 'text/plain; version=0.0.4; charset=utf-8',
    'Content-Type of the text format 0.0.4');
is(prom_sum(prom_parse($r->body), 'welby_requests_total'), $N,
    'scrapes are not counted as requests');

###############################################################################

# the page's methods and access

$r = page(method => 'POST', body => 'x');
is($r->status, 405, 'POST: 405');
is($r->header('Allow'), 'GET, HEAD', 'with Allow: GET, HEAD');

$r = page(method => 'HEAD');
my $full = page();
is($r->status . ' ' . length($r->body), '200 0', 'HEAD: 200, no body');
is($r->header('Content-Length'), length($full->body),
    'HEAD: the page\'s length');

is(page(uri => '/metrics-local')->status, 200,
    'allow 127.0.0.1: served to 127.0.0.1');
is(page(uri => '/metrics-local', local => '127.0.1.5')->status, 403,
    'allow 127.0.0.1; deny all: refused to 127.0.1.5');
is(page(local => '127.0.1.5')->status, 200,
    'without allow/deny: served to 127.0.1.5 too (the operator\'s choice)');

###############################################################################

# a reload keeps every counter; this one also goes to three workers with
# worker_processes after http{}: the zone does not depend on it

my $before = prom_parse(page()->body);

$written = $t->read_file('nginx.conf');
$written =~ s/^worker_processes 2;\n//m or die "no worker_processes 2\n";
$written .= "\nworker_processes 3;\n";
$t->write_file('nginx.conf', $written);

ok($t->reload(), 'reload with worker_processes 3, after http{}');

$p = settled($N);
my ($same, $changed) = (0, '');
for my $f (@{ $before->{order} }) {
    for my $s (@{ $before->{families}{$f}{samples} }) {
        my $now = prom_value($p, $s->{name}, %{ $s->{labels} });
        next if $s->{name} eq 'welby_zone_used_bytes'
            || ($s->{name} eq 'welby_audit_records_total'
                && $s->{labels}{result} eq 'failed');
        if (defined $now && $now == $s->{value}) { $same++ }
        else { $changed .= "$s->{name} $s->{value} -> " . ($now // 'gone') . "\n" }
    }
}
is($changed, '', "after the reload every series is what it was ($same)");
unlike($t->read_file('error.log'), qr/metrics zone resized/,
    'nginx kept the zone');
is(prom_value($p, 'welby_audit_records_total', result => 'failed'), $N + 3,
    'the old workers, leaving, counted /dev/full\'s held records as failed');

get('/open/x') for 1 .. 4;
$p = settled($N + 4);
is(prom_value($p, 'welby_requests_total', decision => 'allow',
    reason => 'none'), 17, 'and counts on from there');

@pids = keys %{{ map { /^(\d+) / ? ($1 => 1) : () }
    split /\n/, $t->read_file('pids.log') }};
cmp_ok(scalar @pids, '>=', 3, 'new workers served them');

# and back to the test globals' order: a second reload

$written = $t->read_file('nginx.conf');
$written =~ s/\nworker_processes 3;\n//;
$written =~ s/^(#GLOBALS_END)$/worker_processes 2;\n$1/m;
$t->write_file('nginx.conf', $written);
ok($t->reload(), 'reload with worker_processes 2 before http{}');

get('/api/x') for 1 .. 2;
$p = settled($N + 6);
is(prom_value($p, 'welby_requests_total', decision => 'deny',
    reason => 'token_missing'), 7, 'token_missing counted on over two '
    . 'reloads');
is(prom_value($p, 'welby_request_duration_seconds_count'), $N + 6,
    'the histogram too');
is_deeply($p->{errors}, [], 'the page still parses');

###############################################################################

# nginx -t

sub conf_error {
    my ($location, $server) = @_;
    my $c = $CONF;
    $c =~ s/welby_metrics;\n        \}\n\n        # as README/$location\n        }\n\n        # as README/
        or die "no metrics location\n";
    $c =~ s/(listen 127.0.0.1:%%PORT_8080%% reuseport;)/$1\n$server/
        if $server;
    $t->write_file_expand('bad.conf', $c);
    return $t->test_config('bad.conf');
}

my ($code, $out) = conf_error('welby_metrics on;');
isnt($code, 0, 'welby_metrics with an argument: nginx -t fails');
like($out, qr/\[emerg\] invalid number of arguments in "welby_metrics"/,
    'naming the directive') or diag($out);

($code, $out) = conf_error("welby_metrics;\n            welby_metrics;");
isnt($code, 0, 'welby_metrics twice: nginx -t fails');
like($out, qr/\[emerg\] "welby_metrics" directive is duplicate/,
    'is duplicate') or diag($out);

($code, $out) = conf_error('welby_metrics;', 'welby_metrics;');
isnt($code, 0, 'welby_metrics in a server: nginx -t fails');
like($out, qr/\[emerg\] "welby_metrics" directive is not allowed here/,
    'not allowed there') or diag($out);

($code, $out) = conf_error('welby_metrics;');
is($code, 0, 'the good configuration passes nginx -t') or diag($out);

# /dev/full's failure is expected here (t/17-audit-failing-file.t checks
# it); set aside so that any other [alert] still fails the teardown

$t->stop();
my $log = $t->read_file('error.log');
like($log, qr/\[alert\] .*"\/dev\/full": \d+ bytes of records not written/,
    'at exit, /dev/full\'s held records are reported lost');
$t->write_file('error.log', join "\n",
    grep { !/welby: audit log "\/dev\/full"/ } split /\n/, $log);
