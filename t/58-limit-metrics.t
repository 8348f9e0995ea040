#!/usr/bin/perl

# welby_rate_limited_total{limit}: one series per welby_limit rule name,
# counting what each rule found over its rate, refused or (mode=detect)
# only counted, summed over two workers; a reload keeps the counts and a
# new rule's series starts at 0.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_get parse_response);
use Welby::Prom qw(prom_parse prom_value);

my $t = Welby::Nginx->new();

my $conf = <<'EOF';
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_zone limits 1m;

    server {
        listen 127.0.0.1:%%PORT_8080%% reuseport;

        location /enforced/ {
            welby on;
            welby_token off;
            welby_limit name=enforced zone=limits key=ip rate=1r/m burst=2;
            js_content echo.echo;
        }

        location /counted/ {
            welby on;
            welby_token off;
            welby_limit name=counted zone=limits key=ip rate=1r/m
                        mode=detect;
            js_content echo.echo;
        }
        %%EXTRA%%
        location = /metrics {
            welby_metrics;
        }
    }
}
EOF

sub config {
    my ($extra) = @_;
    (my $c = $conf) =~ s/%%EXTRA%%/$extra/;
    $t->write_file_expand('nginx.conf', $c);
    # two workers count together
    my $n = $t->read_file('nginx.conf');
    $n =~ s/^worker_processes 1;$/worker_processes 2;/m
        or die "no worker_processes line in the test globals\n";
    $t->write_file('nginx.conf', $n);
}

config('');
$t->run();

sub page {
    my $r = parse_response(http_get('/metrics'));
    return prom_parse($r ? $r->body : '');
}

sub limited {
    my ($p, $name) = @_;
    return prom_value($p, 'welby_rate_limited_total', limit => $name);
}

my $p = page();
is_deeply($p->{errors}, [], 'the page parses');
is(limited($p, 'enforced') . ' ' . limited($p, 'counted'), '0 0',
    'each rule has its series from the start, at 0');

my @s = map { my $r = parse_response(http_get('/enforced/x'));
              $r ? $r->status : 0 } 1 .. 7;
is("@s", '200 200 200 429 429 429 429',
    'enforced: 1 + burst 2 pass, then refused');

@s = map { my $r = parse_response(http_get('/counted/x'));
           $r ? $r->status : 0 } 1 .. 5;
is("@s", '200 200 200 200 200', 'detect: none refused');

$p = page();
is(limited($p, 'enforced'), 4,
    'welby_rate_limited_total{limit="enforced"} is the 4 refusals');
is(limited($p, 'counted'), 4,
    'welby_rate_limited_total{limit="counted"} is the 4 requests over '
    . 'the rate in detect mode');

config(<<'EOF');
        location /later/ {
            welby on;
            welby_token off;
            welby_limit name=later zone=limits key=ip rate=1r/m;
            js_content echo.echo;
        }
EOF
$t->reload();

$p = page();
is(limited($p, 'enforced') . ' ' . limited($p, 'counted'), '4 4',
    'after a reload the rules\' counts go on');
is(limited($p, 'later'), 0, 'a rule the reload added starts at 0');

done_testing();
