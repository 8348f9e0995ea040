#!/usr/bin/perl

# The WAF's response inspection (welby_waf_response): off unless a
# location asks for it; then the answer is held, as the response check
# holds one, its status and headers fed to libmodsecurity (phase 3) and,
# once whole, its body (phase 4), before a byte of it reaches the client.
# A rule that intervenes replaces the answer with a 403 waf_block
# OperationOutcome; detect mode records and sends the answer on; an
# answer larger than the bound is not sent unchecked (502
# response_unverifiable); the request headers that would make the answer
# partial or compressed are removed, as for the response check.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $secret = 'leak' . join('', map { int rand 10 } 1 .. 12);

$t->write_file('rules.conf', <<"EOF");
SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess On
SecResponseBodyMimeType application/fhir+json text/plain
SecResponseBodyLimit 1048576
SecRule RESPONSE_STATUS "\@streq 599" "id:440500,phase:3,deny,log"
SecRule RESPONSE_HEADERS:X-Debug "\@contains stack" "id:440501,phase:3,deny,log"
SecRule RESPONSE_BODY "\@contains $secret" "id:440502,phase:4,deny,log,severity:'CRITICAL'"
EOF

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_waf_rules %%TESTDIR%%/rules.conf;
    welby_fhir_response_max_size 64k;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_waf on;
        add_header X-Waf-Rules $welby_waf_rules always;

        location / {
            welby_waf_response on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/ {
            welby_waf detect;
            welby_waf_response on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /default/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        default_type text/plain;

        location /clean { return 200 "all well\n"; }
        location /leak { return 200 "the answer holds %%SECRET%%\n"; }
        location /status { return 599 "odd\n"; }
        location /header {
            add_header X-Debug "stack trace";
            return 200 "ok\n";
        }
        location = /big {
            # over welby_fhir_response_max_size
            alias %%TESTDIR%%/big.txt;
        }
        location /echo-headers {
            js_content echo.echo;
        }
        location /detect/ {
            return 200 "the answer holds %%SECRET%%\n";
        }
        location /default/ {
            return 200 "the answer holds %%SECRET%%\n";
        }
    }
}
EOF

my $conf = $t->read_file('nginx.conf');
$conf =~ s/%%SECRET%%/$secret/g;
$t->write_file('nginx.conf', $conf);
$t->write_file('big.txt', 'x' x 70000);

$t->run()->plan(19);

sub req { parse_response(http_req(@_)) }
sub rec { $t->audit_record($_[0] && $_[0]->request_id) }
sub code { $_[0] && $_[0]->reason_code }



my $r = req(uri => '/clean');
is($r && $r->status, 200, 'a clean answer is sent');
is($r && $r->body, "all well\n", 'as the backend sent it');

$r = req(uri => '/leak');
is($r && $r->status, 403, 'an answer whose body a rule refuses is replaced');
is(code($r), 'waf_block', 'by a waf_block OperationOutcome');
unlike($r && $r->raw, qr/\Q$secret\E/, 'nothing of the answer reaches the '
    . 'client');
my $a = rec($r);
is_deeply($a && $a->{waf}{rules}, [440502], 'the record names the rule');
is($a && $a->{reason}, 'waf_block', 'and the reason');

$r = req(uri => '/status');
is($r && $r->status, 403, 'a rule on the response status (phase 3)');

$r = req(uri => '/header');
is($r && $r->status, 403, 'a rule on a response header (phase 3)');
is($r && $r->header_count('X-Debug'), 0, 'the header is not sent');

$r = req(uri => '/big');
is($r && $r->status, 502, 'an answer over the bound is not sent unchecked');
is(code($r), 'response_unverifiable', 'response_unverifiable');

$r = req(uri => '/echo-headers', headers => ['Range: bytes=0-1',
    'Accept-Encoding: gzip']);
my $h = $r && eval { $r->json->{headers} } || {};
ok(!exists $h->{range} && !exists $h->{'accept-encoding'},
    'Range and Accept-Encoding are not sent on: the answer must be whole');

$r = req(uri => '/detect/x');
is($r && $r->status, 200, 'welby_waf detect: the answer is sent');
like($r && $r->body, qr/\Q$secret\E/, 'welby_waf detect: as it was');
$a = rec($r);
is($a && $a->{outcome} . ' ' . $a->{reason}, 'allow waf_block',
    'welby_waf detect: recorded as detected');

$r = req(uri => '/default/x');
is($r && $r->status, 200, 'without welby_waf_response the answer is not '
    . 'inspected');
$a = rec($r);
ok($a && !grep({ $_ == 440502 } @{ $a->{waf}{rules} // [] }),
    'and no response rule ran');

my $logs = $t->log_entries();
unlike($logs . $t->read_file('audit.log'), qr/\Q$secret\E/,
    'nothing of an answer in the logs');
