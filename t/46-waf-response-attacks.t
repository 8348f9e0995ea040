#!/usr/bin/perl

# Attacks on the WAF's response inspection (welby_waf_response): a
# backend answer carrying what a response rule must stop, shaped so that
# the rule would not see it.  Each answer here carries the secret the
# rule matches; none of it may reach the client.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Compress::Gzip qw(gzip);
use IO::Uncompress::Gunzip qw(gunzip);
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $secret = 'leak' . join('', map { int rand 10 } 1 .. 12);

$t->write_file('rules.conf', <<"EOF");
SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess On
SecResponseBodyMimeType application/fhir+json text/plain text/html
SecResponseBodyLimit 1048576
SecRule RESPONSE_BODY "\@contains $secret" "id:440502,phase:4,deny,log"
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
        welby_waf_response on;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /ssi/ {
            ssi on;
            ssi_types *;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /after/ {
            add_after_body /leak;
            addition_types *;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        default_type text/plain;

        location /leak { return 200 "the answer holds %%SECRET%%\n"; }

        location = /gzip {
            # a backend that compresses whatever the client asked for
            add_header Content-Encoding gzip;
            alias %%TESTDIR%%/leak.gz;
        }

        location = /upper {
            default_type TEXT/PLAIN;
            return 200 "the answer holds %%SECRET%%\n";
        }

        location = /space {
            default_type "text/plain ; charset=utf-8";
            return 200 "the answer holds %%SECRET%%\n";
        }

        location /ssi/ {
            default_type text/html;
            return 200 "a <!--# include virtual=\"/leak\" --> b\n";
        }

        location /after/ { return 200 "clean\n"; }
    }
}
EOF

my $conf = $t->read_file('nginx.conf');
$conf =~ s/%%SECRET%%/$secret/g;
$t->write_file('nginx.conf', $conf);

my $gz;
gzip(\"the answer holds $secret\n" => \$gz);
$t->write_file('leak.gz', $gz);

$t->run()->plan(6);

sub req { parse_response(http_req(@_)) }
sub raw { http_req(@_) // '' }

# what reached the client, cut short or whole
sub leaks {
    my ($raw) = @_;
    my $r = parse_response($raw);
    return $raw =~ /\Q$secret\E/ ? 1 : 0 unless $r;
    my $body = $r->raw;
    if (($r->header('Content-Encoding') // '') =~ /gzip/) {
        my $out;
        gunzip(\$r->raw_body => \$out) and $body .= $out;
    }
    return $body =~ /\Q$secret\E/ ? 1 : 0;
}

# control: the rule catches the plain answer
my $r = req(uri => '/leak');
my $raw;
is($r && $r->status, 403, 'the rule refuses the plain answer');

$raw = raw(uri => '/gzip');
ok(!leaks($raw), 'a compressed answer (Content-Encoding gzip, whatever the '
    . 'request said) does not pass unread');

$raw = raw(uri => '/upper');
ok(!leaks($raw), 'a Content-Type in capitals does not escape the body rules');

$raw = raw(uri => '/space');
ok(!leaks($raw), 'a Content-Type with a space before its parameters does '
    . 'not escape the body rules');

$raw = raw(uri => '/ssi/x');
ok(!leaks($raw), 'an SSI include in the answer does not bring an answer '
    . 'in uninspected');

$raw = raw(uri => '/after/x');
ok(!leaks($raw), 'add_after_body does not bring an answer in uninspected');
