#!/usr/bin/perl

# The workers' file watch (refresh=) and a writer that is not atomic: a
# JWKS file read after it was truncated and before it was written fails
# to load (old keys kept), and the complete file must still be read, even
# when it was written in the same second as the truncation, so that it
# has the failed version's mtime.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

plan(skip_all => 'njs (the echo backend) is not installed')
    unless $t->has_js;

my $ISS = 'https://refresh.test';
my $AUD = 'https://fhir.test';
my $K1 = gen_key('ES256', kid => 'k1');
my $K2 = gen_key('ES256', kid => 'k2');
write_jwks("$d/keys.jwks", $K1);
write_jwks("$d/next.jwks", $K2);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://refresh.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test refresh=1s;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run()->plan(4);

sub result {
    my ($key) = @_;
    my $r = parse_response(http_req(uri => '/Patient/p1', headers =>
        ['Authorization: Bearer ' . jwt(key => $key, set => { iss => $ISS,
            aud => $AUD, sub => 'u1' })]));
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } || '');
}

is(result($K2), '401 token_key', 'before: a token of k2 (not published) '
    . 'refused, token_key');

# a writer that has truncated the file and not yet written it; the
# watcher's next check reads it
my $next = $t->read_file('next.jwks');
sleep 1.1;      # an mtime second of its own, after the configured file
open my $fh, '>', "$d/keys.jwks" or die "keys.jwks: $!";
my $truncated = (stat "$d/keys.jwks")[9];
my @failed = $t->wait_for_log(qr/\[error\] .*\Q$d\E\/keys\.jwks.* not re/);
ok(scalar @failed, 'the truncated file fails to load: an [error] names it');
is(result($K1), '200 ', 'the old keys are kept (k1 still accepted)');

# the rest of the write; the mtime set back to the truncation's second,
# as when both fall in one second
binmode $fh;
print $fh $next;
close $fh or die "keys.jwks: $!";
utime $truncated, $truncated, "$d/keys.jwks" or die "utime: $!";

my $got;
$t->wait_for(sub { ($got = result($K2)) eq '200 ' });
is($got, '200 ', 'the complete file, with the failed one\'s mtime, is read '
    . '(k2 accepted)');

# the [error] line is the point of this test, asserted above: set aside so
# that the teardown check still sees any other

$t->stop();
$t->write_file('error.log', join "\n", grep { !/\Q$d\E\/keys\.jwks/ }
    split /\n/, $t->read_file('error.log'));
