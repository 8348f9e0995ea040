#!/usr/bin/perl

# The waf step attacked: by a client that wants content past the rules or
# into the answer, and by an operator's careless rule files.  The rules
# are the test's own (an engine file as rules/welby.conf sets one up, and
# small exact rules): every body a backend receives must have been fed to
# libmodsecurity whole, however it arrived (chunked, HTTP/2 without a
# length, a temporary file, Expect: 100-continue, unbuffered proxying, a
# mirror, an internal redirect from a location without the WAF), a
# rule's redirect must not let a decoded CR LF of the client's start a
# header of its own, the record must name rules as they are (a rule
# without a severity is not EMERGENCY), and rules that would never
# refuse (SecRuleEngine DetectionOnly, as Debian's modsecurity.conf sets
# it, or no rule at all) fail nginx -t rather than let everything
# through.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http http_req parse_response);
use Welby::CGIBackend;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

# a marker no log may hold: it stands for what an attack sends
my $secret = 'attack' . join('', map { int rand 10 } 1 .. 12);

$t->write_file('engine.conf', <<'EOF');
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type \
    "@rx ^application/(?:fhir\+)?json(?:\s*;|$)" \
    "id:440001,phase:1,pass,nolog,t:lowercase,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:440002,phase:2,deny,status:400,log"
EOF

$t->write_file('rules.conf', <<'EOF');
SecRule ARGS "@contains attack" \
    "id:440100,phase:2,deny,log,severity:'CRITICAL'"
SecRule REQUEST_BODY "@contains attack" "id:440101,phase:2,deny,log"
SecRule ARGS:go "@rx ." \
    "id:440110,phase:1,redirect:https://welby.test/%{ARGS.go},log"
SecRule ARGS "@streq nosev" "id:440112,phase:2,pass,log"
SecRule ARGS "@streq notice" "id:440113,phase:2,pass,log,severity:'NOTICE'"
SecRule REQUEST_HEADERS:X-Test "@contains attack" "id:440120,phase:1,deny,log"
EOF

# Debian's /etc/modsecurity/modsecurity.conf-recommended says so
$t->write_file('detection-only.conf', "SecRuleEngine DetectionOnly\n");
$t->write_file('empty.conf', '');
mkdir "$d/d" or die "mkdir: $!";
$t->write_file('nobody.conf', <<'EOF');
SecRuleEngine On
SecRule REQUEST_HEADERS:X-Test "@contains attack" "id:440300,phase:1,deny"
EOF

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    welby_audit_log %%TESTDIR%%/audit.log;

    welby_waf_rules %%TESTDIR%%/engine.conf;
    welby_waf_rules %%TESTDIR%%/rules.conf;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8082%% http2;

        welby on;
        add_header X-Waf-Rules $welby_waf_rules always;

        location / {
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /small-buffer/ {
            welby_waf on;
            client_body_buffer_size 1k;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /unbuffered/ {
            welby_waf on;
            proxy_request_buffering off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /mirrored/ {
            welby_waf on;
            mirror /mirror;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location = /mirror {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/mirror-copy;
        }

        location /waf-off/ {
            welby_waf off;
            proxy_intercept_errors on;
            error_page 404 = /checked/;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/not-found/;
        }

        location /checked/ {
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /welby-off/ {
            welby off;
            error_page 418 = @named;
            return 418;
        }

        location @named {
            welby_waf on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby_waf detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8084%%;
        underscores_in_headers on;
        welby on;

        location / {
            welby_waf on;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass 127.0.0.1:%%PORT_8085%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location /not-found/ {
            return 404;
        }

        location / {
            client_body_buffer_size 1m;
            js_content echo.echo;
        }
    }
}
EOF

Welby::CGIBackend->start(proto => 'fastcgi', port => $t->port(8085));

$t->run()->plan(38);

sub req { parse_response(http_req(@_)) }
sub rec { $t->audit_record($_[0]) }
sub rid { $_[0] ? $_[0]->request_id : '' }
sub code { $_[0] && $_[0]->reason_code }
sub nodebug { $t->log_entries($_[0]) }





my $text = ['Content-Type: text/plain'];

###############################################################################
# every way a body arrives: the rules see it whole

my ($r, $raw);

$r = req(method => 'POST', uri => '/x', body => "x-$secret",
    headers => $text);
is($r && $r->status, 403, 'a body with Content-Length is checked');

my $chunk = "x-$secret";
$r = parse_response(http("POST /x HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\nTransfer-Encoding: chunked\r\n"
    . "Content-Type: text/plain\r\n\r\n"
    . "3\r\nx-a\r\n" . sprintf("%x\r\n%s\r\n0\r\n\r\n",
        length($chunk) - 3, substr($chunk, 3))));
is($r && $r->status, 403, 'a chunked body split inside the marker is '
    . 'checked whole');

my $h2 = $t->port(8082);

sub h2 {
    my (@args) = @_;
    my $out = `curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge --max-time 10 @args 2>/dev/null`;
    return $out;
}

$t->write_file('h2-body', "x-$secret");
is(h2('-X POST -H "Content-Type: text/plain"', "--data-binary \@$d/h2-body",
    "http://127.0.0.1:$h2/x"), '403', 'HTTP/2 with a length: checked');
is(h2('-X POST -H "Content-Type: text/plain" -T -', "< $d/h2-body",
    "http://127.0.0.1:$h2/x"), '403',
    'HTTP/2 without content-length (a stream of DATA frames): checked');

$r = req(method => 'POST', uri => '/small-buffer/x',
    body => ('x' x 20000) . "-$secret", headers => $text);
is($r && $r->status, 403, 'a body in nginx\'s temporary file is checked '
    . 'to its end');

$raw = http_req(method => 'POST', uri => '/x', body => "x-$secret",
    headers => [@$text, 'Expect: 100-continue']);
$raw =~ s{^HTTP/1\.1 100 Continue\r\n\r\n}{} if defined $raw;
$r = parse_response($raw);
is($r && $r->status, 403, 'Expect: 100-continue: the body is checked');

$r = req(method => 'POST', uri => '/unbuffered/x', body => "x-$secret",
    headers => $text);
is($r && $r->status, 403, 'proxy_request_buffering off: the body is read '
    . 'and checked before anything is sent on');

$r = req(method => 'POST', uri => '/mirrored/x', body => "x-$secret",
    headers => $text);
is($r && $r->status, 403, 'a mirrored location: refused before the mirror '
    . 'gets a copy');

$r = req(method => 'POST', uri => '/waf-off/x', body => "x-$secret",
    headers => $text);
is($r && $r->status, 403, 'a body proxied by a WAF-off location, then '
    . 'redirected into a WAF location by error_page: checked there');

$r = req(method => 'POST', uri => '/welby-off/x', body => "x-$secret",
    headers => $text);
is($r && $r->status, 403, 'from a welby off location into a named WAF '
    . 'location: checked there');

###############################################################################
# what the backend parses is what the rules parsed

my $json = ['Content-Type: application/json'];

$r = req(method => 'POST', uri => '/x', body => qq({"a":"$secret"}),
    headers => ['Content-Type: application/json', 'Content-Type: text/plain']);
is($r && $r->header('X-Waf-Rules'), '440100',
    'two Content-Types, JSON first (nginx\'s and the backend\'s): '
    . 'parsed as JSON');

$r = req(method => 'POST', uri => '/x', body => qq({"a":"$secret"}),
    headers => ['Content-Type: Application/JSON ; charset=utf-8']);
is($r && $r->header('X-Waf-Rules'), '440100',
    'a JSON media type in other case, with a parameter: parsed as JSON');

$r = req(method => 'POST', uri => '/x',
    body => qq({"a":"ok","a":"$secret"}), headers => $json);
is($r && $r->header('X-Waf-Rules'), '440100',
    'a duplicate key: the value a last-wins parser keeps is checked');

my $esc = $secret;
$esc =~ s/^a/\\u0061/;
$r = req(method => 'POST', uri => '/x', body => qq({"\\u0000":"$esc"}),
    headers => $json);
is($r && $r->header('X-Waf-Rules'), '440100',
    '\u escapes and a NUL key: the decoded value is checked');

$r = req(method => 'POST', uri => '/x', body => '[' x 3000 . qq("$secret")
    . ']' x 3000, headers => $json);
is($r && $r->status, 403, 'a value nested 3000 deep is checked');

$r = req(method => 'POST', uri => '/x', body => qq({"a":"\xff$secret"}),
    headers => $json);
is($r && $r->header('X-Waf-Rules'), '440002',
    'invalid UTF-8 in a JSON string: the body error rule refuses');

$r = req(method => 'POST', uri => '/x',
    body => '{' . join(',', map { qq("a$_":1) } 1 .. 1500)
        . qq(,"z":"$secret"}), headers => $json);
is($r && $r->status, 403, 'a member after 1500 others is checked');

# underscores_in_headers on: FastCGI reads X_Test as X-Test (HTTP_X_TEST)

my $cgi = $t->port(8084);

$r = req(uri => '/x', port => $cgi, headers => ["X-Test: $secret"]);
is($r && $r->status, 403, 'FastCGI: the header rule refuses X-Test');
$r = req(uri => '/x', port => $cgi, headers => ["X_Test: $secret"]);
is($r && $r->status, 403, 'FastCGI with underscores_in_headers: X_Test, '
    . 'HTTP_X_TEST to the backend, is checked as X-Test');
$r = req(uri => '/x', port => $cgi,
    headers => ['X-Test: ok', "X_Test: $secret"]);
is($r && $r->status, 403, 'a clean X-Test beside it does not hide X_Test');
$r = req(uri => '/x', port => $cgi, headers => ['X_Test: ok']);
is($r && $r->status, 200, 'a clean X_Test reaches the backend');

###############################################################################
# the intervention: a redirect to what the client wrote

$r = req(uri => '/x?go=blocked');
is($r && $r->header('Location'), 'https://welby.test/blocked',
    'a redirect rule with a macro: the Location it expands to');

$raw = http("GET /x?go=a%0d%0aSet-Cookie:%20welby-injected=1 HTTP/1.1\r\n"
    . "Host: localhost\r\nConnection: close\r\n\r\n");
$r = parse_response($raw);
is($r && $r->header_count('Set-Cookie'), 0,
    'a decoded CR LF in the redirect\'s url starts no header of the client\'s');
is($r && $r->status, 403, 'such a redirect is a plain 403 refusal');
is($r && $r->header_count('Location'), 0, 'with no Location');
is(code($r), 'waf_block', 'reason waf_block');

$r = parse_response(http("GET /x?go=%e3%81%82 HTTP/1.1\r\n"
    . "Host: localhost\r\nConnection: close\r\n\r\n"));
is($r && $r->status, 403, 'a redirect url with raw non-ASCII bytes: 403');

###############################################################################
# the record names the rules as they are

$r = req(uri => '/x?a=nosev&b=notice');
my $a = rec(rid($r));
is_deeply($a && $a->{waf}{rules}, [440112, 440113], 'both rules recorded');
is_deeply($a && $a->{waf}{severities}, [-1, 5],
    'a rule without severity: -1, not 0 (EMERGENCY); NOTICE: 5');

$r = req(uri => "/detect/x?a=$secret");
is($r && $r->status, 200, 'detect: let through');
like(nodebug('error.log'), qr/waf detect id:\Q${\rid($r)}\E rules:440100 /,
    'detect: the [warn] line names the rule');

my $logs = $t->read_file('audit.log') . nodebug('error.log');
unlike($logs, qr/\Q$secret\E/, 'what matched is in no log');

###############################################################################
# an operator's careless rule files fail nginx -t

sub conf_error {
    my (@files) = @_;
    my $rules = join ' ', map { "welby_waf_rules $d/$_;" } @files;
    $t->write_file_expand('bad.conf', <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    server {
        listen 127.0.0.1:%%PORT_8083%%;
        location / { welby on; welby_waf on; $rules }
    }
}
EOF
    return $t->test_config('bad.conf');
}

my ($rc, $out) = conf_error('detection-only.conf', 'engine.conf',
    'rules.conf');
isnt($rc, 0, 'SecRuleEngine DetectionOnly first (Debian\'s modsecurity.conf '
    . 'before the rules): nginx -t fails');
like($out, qr/\[emerg\].*SecRuleEngine is not On/,
    'and says the engine is not On');

($rc, $out) = conf_error('empty.conf');
like($out, qr/\[emerg\].*SecRuleEngine is not On/,
    'an empty rules file (no engine, no rule) fails nginx -t');

($rc, $out) = conf_error('rules.conf');
like($out, qr/\[emerg\].*SecRuleEngine is not On/,
    'rules without the engine file fail nginx -t');

($rc, $out) = conf_error('nobody.conf');
like($out, qr/\[warn\].*SecRequestBodyAccess is not On/,
    'rules that never see a body: a warning');

($rc, $out) = conf_error('d');
isnt($rc, 0, 'a directory as a rules file fails nginx -t');
