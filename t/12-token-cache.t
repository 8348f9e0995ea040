#!/usr/bin/perl

# The verified-token cache (welby_token_cache): a repeated token is served
# from the zone, shared by the workers, from its third request on (the
# second verification stores it: tokens used once are never stored); a
# full zone evicts the oldest tokens and never refuses a valid one; a
# reload keeps the zone, and a cached token counts only under the key it
# was verified with.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS = 'https://issuer.test';
my $AUD = 'https://fhir.test';

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

# the smallest zone nginx allows: 8 pages, a few dozen tokens
$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_token_cache zone=tokens:32k;

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

$t->run()->plan(12);

sub token { jwt(key => $_[0], set => { iss => $ISS, aud => $AUD, @_[1 .. $#_] }) }

sub status {
    my ($tok) = @_;
    return parse_response(http_req(uri => '/Patient/p1',
        headers => ["Authorization: Bearer $tok"]))->status;
}

sub reason {
    my ($tok) = @_;
    my $r = parse_response(http_req(uri => '/Patient/p1',
        headers => ["Authorization: Bearer $tok"]));
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } // '');
}

# "welby: token valid jti:<jti> cached:<0|1>" at debug level
sub cached_flags {
    my ($jti) = @_;
    return join '', map { /cached:(\d)/ ? $1 : () }
        grep { /welby: token valid jti:\Q$jti\E / }
        split /\n/, $t->read_file('error.log');
}

my $first = token($key, jti => 'first');

is(status($first), 200, 'a new token is accepted');
is(status($first), 200, 'the same token again is accepted');
is(status($first), 200, 'and a third time');
is(cached_flags('first'), '001',
    'the first two requests verified it, the third found it in the zone');

my @codes;
for my $i (1 .. 300) {
    my $fill = token($key, jti => "fill-$i");
    push @codes, status($fill), status($fill);
}
is(scalar(grep { $_ == 200 } @codes), 600,
    '300 new tokens, each sent twice, through a zone of a few dozen: '
    . 'every one accepted');

is(status($first), 200, 'the first token, long evicted, is accepted');
is(cached_flags('first'), '0010',
    'evicted: verified again, not refused');

# a reload keeps the zone; a rotated key takes its cached tokens with it

my $again = token($key, jti => 'again');
status($again) for 1 .. 3;
is(cached_flags('again'), '001', 'a token cached before the reload');

my $rotated = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $rotated);
$t->reload();

is(reason($again), '401 token_signature',
    'after key k1 is rotated and nginx reloaded, its cached token is refused: '
    . 'verified again, under the new key');

unlike($t->read_file('error.log'), qr/ngx_slab_alloc\(\) failed|is full/,
    'the full zone evicted; it never ran out of memory');

# used once: verified, never stored
my @once = map { token($rotated, jti => "once-$_") } 1 .. 3;
is(join(' ', map { status($_) } @once), '200 200 200',
    'three tokens of the rotated key, each sent once, accepted');
is(join('', map { cached_flags("once-$_") } 1 .. 3), '000',
    'tokens sent once each are never found in the zone');
