#!/usr/bin/perl

# The WAF in a full FHIR location (welby_fhir_base, tokens, policy): it
# runs after the policy step, so a request refused by the token or the
# policy never reaches libmodsecurity (its audit record has no "waf"
# member, and the reason is the earlier step's), while a request the
# policy lets through is refused by the WAF when it carries an attack,
# and reaches the backend when it does not.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);
use Welby::WAF qw(waf_conf);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);
my $waf = waf_conf();

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location /fhir/ {
            welby on;
            welby_fhir_base /fhir;
            $waf
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            add_header X-Backend reached always;
            return 200 '{"resourceType":"Bundle","type":"searchset"}';
        }
    }
}
EOF

$t->run()->plan(5);

my $tok = jwt(key => $key, set => {
    iss => 'https://issuer.test', aud => 'https://fhir.test',
    sub => 'user-p1', client_id => 'app-1', scope => 'patient/*.cruds',
    patient => 'p1' });

sub send_req {
    my ($method, $uri, %o) = @_;
    my $body = $o{body};
    my $req = "$method $uri HTTP/1.1\r\nHost: fhir.test\r\n"
        . "Connection: close\r\n";
    $req .= "Authorization: Bearer $tok\r\n" if $o{token};
    $req .= "Content-Type: application/fhir+json\r\n"
        . 'Content-Length: ' . length($body) . "\r\n" if defined $body;
    $req .= "\r\n" . ($body // '');
    my $r = parse_response(http($req));
    my $rec = $t->audit_record($r && $r->request_id) // {};
    return sprintf '%d %s %s', $r ? $r->status : 0, $rec->{reason} // '-',
        $rec->{waf} ? 'waf:' . join(',', @{ $rec->{waf}{rules} // [] })
                      . ' score:' . ($rec->{waf}{score} // '-')
                    : 'no-waf';
}

my $sqli = "x'%20UNION%20SELECT%20password%20FROM%20users--";

like(send_req(GET => "/fhir/Observation?patient=p1&code=$sqli",
        token => 1),
    qr/^403 waf_block waf:.*\b942\d{3}\b.*\b949110 score:(?:[1-9]\d+|[5-9])$/,
    'an injection the policy lets through is refused by the WAF (CRS\'s '
    . 'blocking rule, its score 5 or more)');

like(send_req(GET => "/fhir/Observation?patient=p2&code=$sqli", token => 1),
    qr/^403 patient_mismatch no-waf$/,
    'the policy refuses first: another patient, the WAF never runs');

like(send_req(GET => "/fhir/Observation?patient=p1&code=$sqli"),
    qr/^401 \S+ no-waf$/,
    'the token step refuses first: no token, the WAF never runs');

like(send_req(POST => '/fhir/Observation', token => 1,
        body => '{"resourceType":"Observation","status":"final",'
            . '"code":{"text":"x"},"subject":{"reference":"Patient/p1"},'
            . '"valueString":"<script>alert(1)</script>"}'),
    qr/^403 waf_block waf:.*\b941\d{3}\b/,
    'a write the policy allows is refused by the WAF for its body');

like(send_req(GET => '/fhir/Observation?patient=p1&code='
        . 'http://loinc.org|8867-4&date=ge2026-01-01T00:00:00%2B09:00',
        token => 1),
    qr/^200 - waf: score:0$/,
    'a clean search reaches the backend, no rule matched, score 0 '
    . '(rule 440999)');
