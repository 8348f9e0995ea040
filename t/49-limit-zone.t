#!/usr/bin/perl

# welby_zone, the shared-memory store of the limits and the detectors:
# its nginx -t errors, and a reload that keeps a zone of the same size.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_get parse_response);

my $t = Welby::Nginx->new(js => 0);
my $N = 0;

sub conf {
    my ($http) = @_;
    my $name = "test-" . ++$N . ".conf";

    $t->write_file_expand($name, <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    $http

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        location / {
            welby on;
            welby_token off;
            return 204;
        }
    }
}
EOF

    return $t->test_config($name);
}

sub fails_with {
    my ($what, $msg, $http) = @_;
    my ($code, $out) = conf($http);
    isnt($code, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] \Q$msg\E/, "$what: nginx -t says '$msg'")
        or diag($out);
}

$t->plan(16);

my ($code, $out) = conf('welby_zone a 1m; welby_zone b 32k;');
is($code, 0, 'two zones, 1m and 32k (8 pages), are accepted') or diag($out);

fails_with('a zone of 7 pages', 'welby_zone "a" is too small: 28k, it must '
    . 'be at least 32768', 'welby_zone a 28k;');
fails_with('a size that is not one', 'invalid welby_zone size "1q"',
    'welby_zone a 1q;');
fails_with('the same zone twice', 'duplicate welby_zone "a"',
    'welby_zone a 1m; welby_zone a 1m;');
fails_with('the same name with another size',
    'welby_zone "a" is already declared with size 1048576',
    'welby_zone a 1m; welby_zone a 2m;');
fails_with('the name of a token cache',
    'the shared memory zone "a" is already declared for a different use',
    'welby_token_cache zone=a:1m; welby_zone a 1m;');

# a reload keeps a zone of the same size and makes a new one of another

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_zone a 1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        location / {
            welby on;
            welby_token off;
            return 204;
        }
    }
}
EOF

$t->run();

is(parse_response(http_get('/'))->status, 204, 'nginx runs with a zone');

ok($t->reload(), 'a reload with the same zone succeeds');
is(parse_response(http_get('/'))->status, 204, 'and serves');

my $conf = $t->read_file('nginx.conf');
$conf =~ s/welby_zone a 1m;/welby_zone a 2m;/;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'a reload with the zone at another size succeeds');

unlike($t->log_entries(), qr/welby_zone/, 'and no line about the zone');
