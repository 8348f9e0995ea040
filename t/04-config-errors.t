#!/usr/bin/perl

# Configuration errors reported by "nginx -t" (nginx is never started).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx;

my $t = Welby::Nginx->new();
my $N = 0;

# Writes a config with the given snippets at main, http, server and
# location level, runs nginx -t, returns (exit code, output).
sub conf {
    my (%s) = @_;
    my $name = "test-" . ++$N . ".conf";
    $s{$_} //= '' for qw(main http server location events);

    $t->write_file_expand($name, <<"EOF");
%%TEST_GLOBALS%%
$s{main}

events {
    $s{events}
}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    $s{http}

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        $s{server}

        location / {
            $s{location}
            return 204;
        }
    }
}
EOF

    return $t->test_config($name);
}

# one case = two assertions: nginx -t fails, and prints the exact message
sub fails_with {
    my ($what, $msg, %s) = @_;
    my ($code, $out) = conf(%s);
    isnt($code, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] \Q$msg\E/,
        "$what: nginx -t says '$msg'") or diag($out);
}

$t->plan(25);

###############################################################################
# valid configurations

my ($code, $out) = conf(
    http => 'welby on; welby_mode detect;',
    server => 'welby off; welby_mode enforce;',
    location => 'welby on; welby_mode detect;',
);
is($code, 0, 'welby and welby_mode are accepted at http, server and '
    . 'location level') or diag($out);

($code, $out) = conf(location => 'welby off; welby_mode enforce;');
is($code, 0, 'welby off and welby_mode enforce are accepted') or diag($out);

###############################################################################
# invalid values and argument counts

fails_with('welby maybe',
    'invalid value "maybe" in "welby" directive, it must be "on" or "off"',
    location => 'welby maybe;');

fails_with('welby_mode foo',
    'invalid value "foo" in "welby_mode" directive, it must be "enforce" or "detect"',
    location => 'welby on; welby_mode foo;');

fails_with('welby on on',
    'invalid number of arguments in "welby" directive',
    location => 'welby on on;');

fails_with('welby without argument',
    'invalid number of arguments in "welby" directive',
    server => 'welby;');

fails_with('welby_mode detect enforce',
    'invalid number of arguments in "welby_mode" directive',
    http => 'welby_mode detect enforce;');

###############################################################################
# contexts

fails_with('welby at main level',
    '"welby" directive is not allowed here',
    main => 'welby on;');

fails_with('welby_mode at main level',
    '"welby_mode" directive is not allowed here',
    main => 'welby_mode detect;');

fails_with('welby in events',
    '"welby" directive is not allowed here',
    events => 'welby on;');

###############################################################################
# duplicates

fails_with('duplicate welby in a location',
    '"welby" directive is duplicate',
    location => 'welby on; welby on;');

fails_with('duplicate welby in a server',
    '"welby" directive is duplicate',
    server => 'welby on; welby off;');

fails_with('duplicate welby_mode in http',
    '"welby_mode" directive is duplicate',
    http => 'welby_mode detect; welby_mode detect;');

###############################################################################
# the harness keeps expected [emerg]s out of error.log (teardown check)

unlike($t->read_file('error.log'), qr/\[emerg\]/,
    'expected [emerg]s did not reach error.log');
