#!/usr/bin/perl

# The benign corpus (t/waf/benign.txt): requests of a Japanese PHR app
# (Patients in kanji, kana and romaji, European names with apostrophes,
# Observations with units and comparators, clinical free text in
# Japanese and English, base64 attachments, Bundles, JSON Patch, searches
# with modifiers, +09:00 dates and system|code tokens, iOS / Android /
# web JSON styles) through the WAF: every one reaches the backend, and
# no rule matches it at all (not even one that would only add to the
# score).  Prints the false positives per family.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx;
use Welby::WAF qw(read_corpus waf_conf send_case matched_rules);

my @cases = read_corpus("$FindBin::Bin/waf/benign.txt");

my $t = Welby::Nginx->new();
my $waf = waf_conf();

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_audit_log %%TESTDIR%%/audit.log;
    client_max_body_size 1m;
    client_body_buffer_size 1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            welby_tls off;
            welby_token off;
            $waf
            # the test backend keeps no versions: a PUT's If-Match would
            # make its "return 200" answer 412
            proxy_set_header If-Match "";
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            add_header X-Backend reached always;
            return 200 "backend ok\\n";
        }
    }
}
EOF

$t->run()->plan(scalar @cases + 1);

my (%seen, %fp);
my $n = 0;

for my $c (@cases) {
    my $id = ++$n;
    my $r = send_case($t, $c, $id);
    my $m = matched_rules($t, $r);
    my $status = $r ? $r->status : 0;
    my $reached = $r && ($r->header('X-Backend') // '') eq 'reached';
    $seen{ $c->{family} }++;

    my $ok = $status == 200 && $reached && !@{ $m->{rules} };
    $fp{ $c->{family} }++ unless $ok;
    ok($ok, "$c->{family} $c->{what} (case $id): reaches the backend, "
        . 'no rule matches')
        or diag("case $id: status $status, reason $m->{reason}, rules "
            . join(' ', @{ $m->{rules} }));
}

my $all = 0;
$all += $_ for values %fp;
diag("false positives $all/" . scalar(@cases) . ': '
    . join ', ', map { "$_ " . ($fp{$_} // 0) . "/$seen{$_}" }
    sort keys %seen);

is($all, 0, 'no false positive');
