#!/usr/bin/perl

# welby_zone, the shared-memory store of the limits and the detectors,
# and welby_limit's configuration: the nginx -t errors of both; a reload
# that keeps a zone of the same size and its counts, and one that starts
# a zone of another size afresh; two rules in one zone; a tiny zone
# flooded with keys, which forgets exactly the oldest ones and says how
# many.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use Welby::Nginx qw(http_req parse_response);

my $t = Welby::Nginx->new();
my $N = 0;

sub conf {
    my ($http, $location) = @_;
    my $name = "test-" . ++$N . ".conf";
    $location //= '';

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
            $location
            return 204;
        }
    }
}
EOF

    return $t->test_config($name);
}

sub fails_with {
    my ($what, $msg, $http, $location) = @_;
    my ($code, $out) = conf($http, $location);
    isnt($code, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] \Q$msg\E/, "$what: nginx -t says '$msg'")
        or diag($out);
}

$t->plan(69);

###############################################################################
# welby_zone

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

###############################################################################
# welby_limit

my $ok = 'name=n zone=z key=ip rate=1r/s';

($code, $out) = conf('welby_zone z 1m; welby_limit name=h zone=z key=ip '
    . 'rate=10r/m burst=5 hour=100 day=1000;', "welby_limit $ok; "
    . 'welby_limit name=v zone=z key=$http_x_key$uri rate=1000000r/h '
    . 'mode=detect; welby_limit name=s-1_x zone=z key=sub rate=1r/s; '
    . 'welby_limit name=c zone=z key=client_id rate=1r/s; '
    . 'welby_limit name=p zone=z key=patient rate=1r/s mode=enforce; '
    . 'welby_limit_headers on;');
is($code, 0, 'welby_limit with every key and parameter, at http and '
    . 'location level, is accepted') or diag($out);

($code, $out) = conf('welby_limit name=n zone=z key=ip rate=1r/s; '
    . 'welby_zone z 1m;');
is($code, 0, 'a zone may be declared after its first user') or diag($out);

fails_with('a zone no welby_zone declares', 'welby_zone "nowhere" is used '
    . 'but not declared: add "welby_zone nowhere <size>;" to the http block',
    '', 'welby_limit name=n zone=nowhere key=ip rate=1r/s;');
fails_with('a bad rate unit', 'invalid rate "rate=2r/x": 1 to 1000000 r/s, '
    . 'r/m or r/h', 'welby_zone z 1m;',
    'welby_limit name=n zone=z key=ip rate=2r/x;');
fails_with('rate 0', 'invalid rate "rate=0r/s"', 'welby_zone z 1m;',
    'welby_limit name=n zone=z key=ip rate=0r/s;');
fails_with('a rate above the bound', 'invalid rate "rate=1000001r/s"',
    'welby_zone z 1m;', 'welby_limit name=n zone=z key=ip rate=1000001r/s;');
fails_with('an unknown key', 'unknown welby_limit key "user": it must be '
    . 'ip, sub, client_id, patient or a variable', 'welby_zone z 1m;',
    'welby_limit name=n zone=z key=user rate=1r/s;');
fails_with('a duplicate name', 'duplicate welby_limit name "n"',
    'welby_zone z 1m;', "welby_limit $ok; welby_limit $ok;");
fails_with('a name in capitals', q{invalid welby_limit name "API": 1 to 32 }
    . q{of a-z, 0-9, '_' and '-'}, 'welby_zone z 1m;',
    'welby_limit name=API zone=z key=ip rate=1r/s;');
fails_with('a name of 33', 'invalid welby_limit name "' . ('a' x 33) . '"',
    'welby_zone z 1m;',
    'welby_limit name=' . ('a' x 33) . ' zone=z key=ip rate=1r/s;');
fails_with('a name with a dot', 'invalid welby_limit name "a.hour"',
    'welby_zone z 1m;', 'welby_limit name=a.hour zone=z key=ip rate=1r/s;');
fails_with('a bad burst', 'invalid burst "burst=-1": 0 to 1000000',
    'welby_zone z 1m;', "welby_limit $ok burst=-1;");
fails_with('a quota of 0', 'invalid quota "hour=0"', 'welby_zone z 1m;',
    "welby_limit $ok hour=0;");
fails_with('no rate', '"welby_limit" must have "rate" parameter',
    'welby_zone z 1m;', 'welby_limit name=n zone=z key=ip;');
fails_with('no name', '"welby_limit" must have "name" parameter',
    'welby_zone z 1m;', 'welby_limit zone=z key=ip rate=1r/s;');
fails_with('no key', '"welby_limit" must have "key" parameter',
    'welby_zone z 1m;', 'welby_limit name=n zone=z rate=1r/s;');
fails_with('an unknown parameter', 'invalid parameter "nodelay"',
    'welby_zone z 1m;', "welby_limit $ok nodelay;");
fails_with('another module\'s zone', 'the shared memory zone "lr" is '
    . 'already declared for a different use',
    'limit_req_zone $binary_remote_addr zone=lr:1m rate=1r/s;',
    'welby_limit name=n zone=lr key=ip rate=1r/s;');

###############################################################################
# reloads, two rules in one zone, and a tiny zone flooded

my $CONF = <<'EOF';
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_zone a 1m;
    welby_zone b 64k;
    welby_zone tiny 32k;
    welby_zone keep 32k;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        welby on;
        welby_token off;
        add_header X-Limit $welby_limit always;

        location /kept/ {
            welby_limit name=kept zone=a key=ip rate=1r/m burst=1;
            js_content echo.echo;
        }

        # a string key: the zone's keyed digest of the value
        location /vkept/ {
            welby_limit name=vkept zone=a key=$http_x_key rate=1r/m burst=1;
            js_content echo.echo;
        }

        location /vother/ {
            welby_limit name=vother zone=b key=$http_x_key rate=1r/m;
            js_content echo.echo;
        }

        location /pair/ {
            welby_limit name=first zone=a key=ip rate=1r/m;
            welby_limit name=second zone=a key=ip rate=1r/m burst=2;
            js_content echo.echo;
        }

        location /keep/ {
            welby_limit name=keep zone=keep key=$http_x_key rate=1r/s;
            js_content echo.echo;
        }

        location /flood/ {
            welby_limit name=flood zone=tiny key=$http_x_key rate=1r/m;
            js_content echo.echo;
        }
    }
}
EOF

$t->write_file_expand('nginx.conf', $CONF);
$t->run();

sub get {
    my ($uri, $from, @h) = @_;
    my $r = parse_response(http_req(uri => $uri, local => $from,
        headers => [@h]));
    return $r ? $r->status : 0;
}

sub statuses {
    my ($uri, $from, $n, @h) = @_;
    return join ' ', map { get($uri, $from, @h) } 1 .. $n;
}

# the refused request's record's limit.key: the digest, in hex
sub vkey {
    my ($uri, $n) = @_;
    my @s = map { parse_response(http_req(uri => $uri, local => '127.0.3.9',
        headers => ['X-Key: api-key-1'])) } 1 .. $n;
    my $rec = $s[-1] && $t->audit_record($s[-1]->request_id) // {};
    return join(' ', map { $_ ? $_->status : 0 } @s) . ' '
        . ($rec->{limit}{key} // '-');
}

is(statuses('/kept/', '127.0.3.1', 3), '200 200 429',
    'burst=1: 2 pass, the 3rd is refused');
my ($va) = vkey('/vkept/', 3) =~ /^200 200 429 ([0-9a-f]{32})$/;
ok($va, 'a string key, burst=1: 2 pass, the 3rd is refused, its record '
    . 'names the key as 32 hex digits');
my ($vb) = vkey('/vother/', 2) =~ /^200 429 ([0-9a-f]{32})$/;
ok($vb && $va && $vb ne $va, 'the same value in another zone is another '
    . 'key (each zone its own secret)');
ok($t->reload(), 'a reload with the same zone');
is(get('/kept/', '127.0.3.1'), 429, 'after the reload the key is still '
    . 'refused: the zone kept its count');
is(vkey('/vkept/', 1), '429 ' . ($va // 'none'), 'after the reload the '
    . 'string key is still refused, as the same digest: the zone kept its '
    . 'secret');
is(vkey('/vother/', 1), '429 ' . ($vb // 'none'), 'and so did the other '
    . 'zone');
is(get('/kept/', '127.0.3.2'), 200, 'another address passes after it');

my $conf = $t->read_file('nginx.conf');
$conf =~ s/name=kept zone=a key=ip rate=1r\/m burst=1;/name=kept zone=a key=ip rate=1r\/m burst=5;/
    or die;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'a reload with the rule at burst=5');
is(statuses('/kept/', '127.0.3.1', 5), '200 200 200 200 429',
    'the kept state under burst=5: the 2 requests spent leave 4');

$conf =~ s/welby_zone a 1m;/welby_zone a 2m;/ or die;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'a reload with the zone at 2m');
is(get('/kept/', '127.0.3.1'), 200, 'a zone of another size starts empty');
my ($vc) = vkey('/vkept/', 3) =~ /^200 200 429 ([0-9a-f]{32})$/;
ok($vc && $va && $vc ne $va, 'a zone of another size starts empty for a '
    . 'string key too, under a new secret');

is(statuses('/pair/', '127.0.3.3', 2), '200 429',
    'two rules in one zone, the same address: the first (burst 0) refuses '
    . 'the 2nd');
$conf =~ s/welby_limit name=first zone=a key=ip rate=1r\/m;// or die;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'a reload without the first rule');
is(statuses('/pair/', '127.0.3.3', 3), '200 200 429',
    'the second rule had counted one: 2 of its 3 are left (their records '
    . 'are apart)');

# a 32k zone: each new key takes a record; once full, each forgets the
# oldest one, which the debug log counts

my $K = 400;
my $before = () = $t->read_file('error.log')
    =~ /welby_zone "tiny" forgot (\d+) live records/g;
is($before, 0, 'nothing forgotten before the flood');

my $bad = 0;
for my $k (1 .. $K) {
    $bad++ unless get('/flood/', '127.0.3.4', "X-Key: k$k") == 200;
}
is($bad, 0, "$K keys, one request each: all pass");

my $E = 0;
$E += $_ for $t->read_file('error.log')
    =~ /welby_zone "tiny" forgot (\d+) live records/g;
my $C = $K - $E;
ok($C >= 180 && $C <= 256, "the 32k zone held $C keys of 128 bytes, "
    . "$E were forgotten");

is(get('/flood/', '127.0.3.4', 'X-Key: k' . ($E + 1)), 429,
    'the oldest key still held is remembered (refused)');
is(get('/flood/', '127.0.3.4', "X-Key: k$E"), 200,
    'the newest key forgotten passes again: the oldest went first');
is(get('/flood/', '127.0.3.4', "X-Key: k$K"), 429,
    'the newest key is remembered');

# a 32k zone full of records whose time is over (kept for reuse): new
# keys still get records, and forgetting the kept ones is no eviction

my $bad2 = 0;
$bad2 += get('/keep/', '127.0.3.5', "X-Key: a$_") == 200 ? 0 : 1 for 1 .. 150;
my $over = time() + 1.1;      # rate=1r/s: each record's time is 1 s
sleep 0.02 while time() < $over;
$bad2 += get('/keep/', '127.0.3.5', "X-Key: b$_") == 200 ? 0 : 1 for 1 .. 150;
is($bad2, 0, '150 keys, then 150 others once the first are over: all pass');
my $E2 = 0;
$E2 += $_ for $t->read_file('error.log')
    =~ /welby_zone "keep" forgot (\d+) live records/g;
is($E2, 0, 'the records over were forgotten, no live one: no eviction');
