#!/usr/bin/perl

# The waf step (welby_waf, welby_waf_rules, $welby_waf_rules,
# $welby_waf_score): libmodsecurity run by the module on the request as
# the client sent it, its headers and its whole body, after the steps that
# refuse on less.  Rules here are the test's own, small and exact (the
# shipped rules/ and their corpora: t/41-waf-attacks.t and
# t/42-waf-benign.t).  Refusals are 403 waf_block OperationOutcomes, or
# what the rule's intervention asks for (another status, a redirect);
# detect mode lets the request through and records the matches; the audit
# record's waf member holds rule ids, severities and the score, never what
# matched; a rule file's error fails nginx -t with its file and line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

# a marker no log may ever hold: it stands for what an attack sends
my $secret = 'attack' . join('', map { int rand 10 } 1 .. 12);

$t->write_file('rules.conf', <<'EOF');
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:fhir\+)?json" \
    "id:440001,phase:1,pass,nolog,t:lowercase,ctl:requestBodyProcessor=JSON"
SecRule ARGS|REQUEST_HEADERS:X-Test "@contains attack" \
    "id:440100,phase:2,deny,log,severity:'CRITICAL',msg:'test attack'"
SecRule ARGS "@streq redirect" \
    "id:440101,phase:1,redirect:https://welby.test/blocked,log"
SecRule ARGS "@streq warn" "id:440102,phase:2,pass,log,severity:'WARNING'"
SecRule ARGS "@streq notacceptable" "id:440103,phase:2,deny,status:406,log"
SecRule ARGS "@streq drop" "id:440104,phase:2,drop,log"
SecRule REQUEST_URI "@contains /early" "id:440105,phase:1,deny,log"
SecRule ARGS "@streq scored" "id:949110,phase:2,deny,log,\
    msg:'Inbound Anomaly Score Exceeded (Total Score: 12)'"
SecRule ARGS:json.resourceType "@streq Attack" \
    "id:440106,phase:2,deny,log,severity:'ERROR'"
SecAction "id:440999,phase:2,pass,log,msg:'7'"
EOF

$t->write_file('other.conf', <<'EOF');
SecRuleEngine On
SecRule ARGS "@contains other" "id:440200,phase:1,deny,log"
EOF

$t->write_file('broken.conf', <<'EOF');
SecRuleEngine On
SecRule ARGS "@contains x" "id:440300,phase:1,deny,log"
SecRule ARGS "@contains y" "id:440301,phase:1,deny,nosuchaction"
EOF

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_alert waf_block 3/1h severity=critical;
    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;

    welby_waf_rules %%TESTDIR%%/rules.conf;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        add_header X-Waf-Rules $welby_waf_rules always;
        add_header X-Waf-Score $welby_waf_score always;

        location / {
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby_waf detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /modedetect/ {
            welby_mode detect;
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /off/ {
            welby_waf off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /other/ {
            welby_waf on;
            welby_waf_rules %%TESTDIR%%/other.conf;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /token/ {
            welby_waf on;
            welby_token bearer;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /redirected/ {
            welby_waf off;
            error_page 404 = /after/;
            return 404;
        }

        location /after/ {
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location / {
            js_content echo.echo;
        }
    }
}
EOF

$t->run()->plan(63);

sub req { parse_response(http_req(@_)) }
sub rec { $t->audit_record($_[0]) }
sub rid { $_[0] ? $_[0]->request_id : '' }
sub code { $_[0] && $_[0]->reason_code }
sub nodebug { $t->log_entries($_[0]) }





###############################################################################
# allowed, refused, and what the record says

my $r = req(uri => '/fhir/Patient?name=tanaka');
is($r && $r->status, 200, 'a clean request reaches the backend');
my $a = rec(rid($r));
is_deeply($a && $a->{waf}, { rules => [], severities => [], score => 7 },
    'its record: no rule, the score rule\'s number');
is($r && $r->header('X-Waf-Score'), '7', '$welby_waf_score of the clean one');

$r = req(uri => "/fhir/Patient?name=$secret");
is($r && $r->status, 403, 'a matching query is refused 403');
is(code($r), 'waf_block', 'reason waf_block in the OperationOutcome');
like($r && $r->body, qr/request-id \Q${\rid($r)}\E/,
    'the OperationOutcome names the request id');
is($r && $r->header('X-Waf-Rules'), '440100', '$welby_waf_rules: the rule');
$a = rec(rid($r));
is($a && $a->{reason}, 'waf_block', 'the record\'s reason');
is($a && $a->{outcome}, 'deny', 'the record\'s outcome deny');
is_deeply($a && $a->{waf}, { rules => [440100], severities => [2] },
    'the record\'s waf: id and severity (CRITICAL 2), no score after a block');

$r = req(uri => '/fhir/Patient', headers => ["X-Test: x-$secret"]);
is($r && $r->status, 403, 'a matching request header is refused');

$r = req(uri => '/early/x');
is($r && $r->status, 403, 'a phase 1 rule refuses before the body');
is($r && $r->header('X-Waf-Rules'), '440105', 'the phase 1 rule is named');

$r = req(uri => '/fhir/Patient?q=warn');
is($r && $r->status, 200, 'a rule that only logs lets the request through');
$a = rec(rid($r));
is_deeply($a && $a->{waf}, { rules => [440102], severities => [4],
    score => 7 }, 'and is in the record with its severity (WARNING 4)');
is($a && $a->{outcome}, 'allow', 'an allowed request with a match: allow');

###############################################################################
# interventions: status, redirect, drop, the CRS score

$r = req(uri => '/fhir/Patient?q=notacceptable');
is($r && $r->status, 406, 'deny,status:406 answers 406');
is(code($r), 'waf_block', '406 is a waf_block OperationOutcome');

$r = req(uri => '/fhir/Patient?q=redirect');
is($r && $r->status, 302, 'redirect: answers 302');
is($r && $r->header('Location'), 'https://welby.test/blocked',
    'redirect: to the rule\'s url');
$a = rec(rid($r));
is($a && $a->{reason}, 'waf_block', 'a redirect is a refusal in the record');

$r = req(uri => '/fhir/Patient?q=drop');
is($r && $r->status, 403, 'drop: refused 403 (libmodsecurity 3 denies)');

$r = req(uri => '/fhir/Patient?q=scored');
$a = rec(rid($r));
is($a && $a->{waf}{score}, 12, 'the score from CRS\'s blocking message');
is($r && $r->header('X-Waf-Score'), '12', '$welby_waf_score: 12');

###############################################################################
# the body: JSON parsed by libmodsecurity, sent on unchanged

my $body = '{"resourceType":"Observation","note":[{"text":"' . $secret
    . '"}]}';
$r = req(method => 'POST', uri => '/fhir/Observation', body => $body,
    headers => ['Content-Type: application/fhir+json; fhirVersion=4.0']);
is($r && $r->status, 403, 'a matching JSON body value is refused');
is($r && $r->header('X-Waf-Rules'), '440100', 'by the ARGS rule');

$r = req(method => 'POST', uri => '/fhir/Observation',
    body => '{"resourceType":"Attack"}',
    headers => ['Content-Type: application/fhir+json']);
is($r && $r->header('X-Waf-Rules'), '440106',
    'JSON members are ARGS named json.<path>');

my $clean = '{"resourceType":"Observation","status":"final"}';
$r = req(method => 'POST', uri => '/fhir/Observation', body => $clean,
    headers => ['Content-Type: application/fhir+json']);
is($r && $r->status, 200, 'a clean JSON body is let through');
is($r && eval { $r->json->{body} }, $clean, 'and reaches the backend as sent');

my $chunk = "form=$secret";
$r = parse_response(http("POST /fhir/x HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\nTransfer-Encoding: chunked\r\n"
    . "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    . sprintf("%x\r\n%s\r\n0\r\n\r\n", length $chunk, $chunk)));
is($r && $r->status, 403, 'a chunked form body is read and checked');

###############################################################################
# detect: matches recorded, nothing refused

$r = req(uri => "/detect/x?name=$secret");
is($r && $r->status, 200, 'detect: a matching request reaches the backend');
is($r && $r->header('X-Waf-Rules'), '440100', 'detect: $welby_waf_rules');
$a = rec(rid($r));
is($a && $a->{outcome}, 'allow', 'detect: the record\'s outcome allow');
is($a && $a->{reason}, 'waf_block', 'detect: the reason it would refuse for');
is($a && $a->{severity}, 'notice', 'detect: severity notice');
is_deeply($a && $a->{waf}{rules}, [440100], 'detect: the rule in the record');
my $id = rid($r);
ok(scalar $t->wait_for_log(qr/\[warn\].*welby: waf detect id:\Q$id\E rules:440100 /),
    'detect: a [warn] line with the rule ids');

$r = req(uri => '/modedetect/x?q=redirect');
is($r && $r->status, 200, 'welby_mode detect: a redirect rule is not obeyed');
is($r && $r->header_count('Location'), 0,
    'welby_mode detect: no Location of the rule reaches the answer');

$r = req(uri => "/off/x?name=$secret");
is($r && $r->status, 200, 'welby_waf off: no rule runs');
$a = rec(rid($r));
ok($a && !exists $a->{waf}, 'welby_waf off: no waf member');

###############################################################################
# rules sets per location, and the order of the steps

$r = req(uri => "/other/x?name=$secret");
is($r && $r->status, 200, 'a location\'s own welby_waf_rules replace the '
    . 'inherited ones');
$r = req(uri => '/other/x?name=other');
is($r && $r->status, 403, 'and its own rules refuse');

$r = req(uri => "/token/x?name=$secret");
is($r && $r->status, 401, 'no token: refused by the token step first');
$a = rec(rid($r));
is($a && $a->{reason}, 'token_missing', 'with token_missing');
ok($a && !exists $a->{waf}, 'the WAF never ran on it');

my $tok = jwt(key => $key);
$r = req(uri => "/token/x?name=$secret",
    headers => ["Authorization: Bearer $tok"]);
is($r && $r->status, 403, 'with a valid token the WAF refuses');
unlike(nodebug('error.log'), qr/\Q$tok\E/, 'no token in error.log');

$r = req(uri => "/redirected/x?name=$secret");
is($r && $r->status, 403, 'an internal redirect into a WAF location is '
    . 'checked there');

###############################################################################
# alerts, and what is never written

$r = req(uri => "/fhir/x?a=$secret") for 1 .. 3;
ok(scalar $t->wait_for_file('audit.log', sub {
    grep { /"alert":\{"event":"waf_block"/ } split /\n/, $_[0] }),
    'welby_alert waf_block: an alert record once the threshold is crossed');

my $logs = $t->read_file('audit.log') . nodebug('error.log');
unlike($logs, qr/\Q$secret\E/, 'what matched is in no log');
unlike($logs, qr/test attack/, 'nor the rule\'s message');
unlike($t->read_file('error.log'), qr/ModSecurity: |Server log callback/,
    'libmodsecurity wrote no text of its own to stderr, the error log');

###############################################################################
# configuration errors: nginx -t

sub conf_error {
    my ($directives) = @_;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        location / { welby on; $directives }
    }
}
EOF
    return $t->test_config('bad.conf');
}

my ($rc, $out) = conf_error("welby_waf on; welby_waf_rules $d/broken.conf;");
isnt($rc, 0, 'a rule file error fails nginx -t');
like($out, qr/\[emerg\].*welby_waf_rules "\Q$d\E\/broken\.conf".*Line: 3/s,
    'the error names the file and the line');

($rc, $out) = conf_error("welby_waf on; welby_waf_rules $d/missing.conf;");
isnt($rc, 0, 'a missing rule file fails nginx -t');
like($out, qr/\[emerg\].*missing\.conf/, 'the error names the missing file');

chmod 0, "$d/other.conf";
($rc, $out) = conf_error("welby_waf on; welby_waf_rules $d/other.conf;");
chmod 0644, "$d/other.conf";
SKIP: {
    skip 'root reads any file', 1 if $> == 0;
    isnt($rc, 0, 'an unreadable rule file fails nginx -t');
}

($rc, $out) = conf_error('welby_waf on;');
like($out, qr/\[emerg\].*"welby_waf" is on here but no "welby_waf_rules"/,
    'welby_waf on without rules fails nginx -t');

($rc, $out) = conf_error('welby_waf maybe;');
like($out, qr/\[emerg\].*invalid value "maybe"/, 'an unknown mode fails');

($rc, $out) = conf_error("welby_waf off; welby_waf_rules $d/broken.conf;");
is($rc, 0, 'rules of a location with the WAF off are not loaded');

###############################################################################
# reload with other rules

$t->write_file('rules.conf', <<'EOF');
SecRuleEngine On
SecRule ARGS "@contains reloaded" "id:440400,phase:1,deny,log"
EOF
$t->reload();
ok($t->wait_for(sub {
    my $x = req(uri => '/fhir/x?q=reloaded');
    return $x && $x->status == 403;
}), 'after a reload the new rules refuse');
$r = req(uri => "/fhir/x?q=$secret");
is($r && $r->status, 200, 'and the old ones are gone');
