#!/usr/bin/perl

# welby_geoip2 and the country lists at configuration time: what fails
# nginx -t and how it says so (a missing, unreadable, corrupt or wrong
# file, a bad country code, a list without a database), and the life of
# a database file across reloads: a new file takes effect at the reload,
# not before; the workers never read the file themselves (the master
# maps it, as root, at configuration time), so its mode or removal after
# start changes nothing until the next reload, and a reload that cannot
# open it keeps the old workers and their mapping.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MaxMind::DB::Reader;
use Time::HiRes qw(time);
use Welby::Nginx qw(http_req parse_response);
use Welby::MMDB;

my $t = Welby::Nginx->new(js => 0);
my $d = $t->testdir();

my %JP = ('127.0.5.0/24' => 'JP');
my %US = ('127.0.5.0/24' => 'US');

Welby::MMDB::country_db("$d/geo.mmdb", map => \%JP);
Welby::MMDB::asn_db("$d/asn.mmdb");
Welby::MMDB::country_db("$d/city.mmdb", type => 'GeoIP2-City');
Welby::MMDB::country_db("$d/asn-as-country.mmdb", type => 'GeoLite2-ASN');
Welby::MMDB::asn_db("$d/country-as-asn.mmdb", type => 'GeoLite2-Country');
Welby::MMDB::country_db("$d/anon.mmdb", type => 'GeoIP2-Anonymous-IP');

# a country type whose records hold no country
Welby::MMDB::country_db("$d/empty-country.mmdb", map => {},
    records => { '127.0.5.0/24' => { city => { names => { en => 'x' } } } });

# damaged copies of a good file
my $good = $t->read_file("$d/geo.mmdb");
my $meta = MaxMind::DB::Reader->new(file => "$d/geo.mmdb")->metadata;
my $tree = $meta->node_count * $meta->record_size * 2 / 8;

$t->write_file('garbage.mmdb', "not a MaxMind DB file\n" x 64);
$t->write_file('truncated.mmdb', substr($good, 0, length($good) / 2));

# MMDB_open() checks sizes only: a record that points past the data
# passes it, and only a walk of the tree finds it
my $bad = $good;
substr($bad, 0, 3) = "\xff\xff\xff";
$t->write_file('tree.mmdb', $bad);

# the data section after the tree and its 16 zero bytes
$bad = $good;
substr($bad, $tree + 16, 32) = "\xff" x 32;
$t->write_file('data.mmdb', $bad);

mkdir "$d/dir.mmdb";

# nginx -t of a configuration with $http in the http block, $loc in the
# location; returns (exit code, output)
sub t_conf {
    my ($http, $loc) = @_;
    $loc //= '';
    $t->write_file_expand('t.conf', <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;
    $http

    server {
        listen 127.0.0.1:%%PORT_8090%%;

        location / {
            welby on;
            $loc
            return 204;
        }
    }
}
EOF
    return $t->test_config('t.conf');
}

sub passes {
    my ($what, @conf) = @_;
    my ($code, $out) = t_conf(@conf);
    is($code, 0, "$what: nginx -t passes") or diag($out);
}

# nginx -t fails with an [emerg] matching $re
sub refused {
    my ($what, $re, @conf) = @_;
    my ($code, $out) = t_conf(@conf);
    ok($code != 0 && $out =~ /\[emerg\][^\n]*$re/, "$what: nginx -t fails")
        or diag("exit $code: $out");
}

my $DB = "welby_geoip2 $d/geo.mmdb;";
my $ASN_ERR = 'the ASN database';

###############################################################################
# the files

$t->plan(49);

passes('a country database', $DB);
passes('a country and an ASN database',
    "welby_geoip2 $d/geo.mmdb asn=$d/asn.mmdb;");
passes('a name relative to the configuration prefix',
    'welby_geoip2 geo.mmdb asn=asn.mmdb;');
passes('a City database is a country database',
    "welby_geoip2 $d/city.mmdb;");

system("$Welby::Nginx::REPO/conf/demo/make-mmdb", "$d/demo-country.mmdb",
    "$d/demo-asn.mmdb");
passes('the files of conf/demo/make-mmdb',
    "welby_geoip2 $d/demo-country.mmdb asn=$d/demo-asn.mmdb;");

refused('a missing file',
    qr/welby_geoip2: the country database "\Q$d\E\/nope.mmdb" cannot be opened: Error opening the specified MaxMind DB file \(2: No such file or directory\)/,
    "welby_geoip2 $d/nope.mmdb;");
refused('a missing ASN file',
    qr/\Q$ASN_ERR\E "\Q$d\E\/nope.mmdb" cannot be opened: .*No such file/,
    "welby_geoip2 $d/geo.mmdb asn=$d/nope.mmdb;");
refused('a directory',
    qr/"\Q$d\E\/dir.mmdb" cannot be opened: /,
    "welby_geoip2 $d/dir.mmdb;");

SKIP: {
    skip 'root reads any file: no unreadable file to show', 1 if $> == 0;
    chmod 0, "$d/asn.mmdb";
    refused('an unreadable file',
        qr/"\Q$d\E\/asn.mmdb" cannot be opened: .*Permission denied/,
        "welby_geoip2 $d/asn.mmdb;");
    chmod 0644, "$d/asn.mmdb";
}

refused('a file that is no MMDB',
    qr/"\Q$d\E\/garbage.mmdb" cannot be opened: The MaxMind DB file contains invalid metadata/,
    "welby_geoip2 $d/garbage.mmdb;");
refused('a truncated file',
    qr/"\Q$d\E\/truncated.mmdb" cannot be opened: The MaxMind DB file contains invalid metadata/,
    "welby_geoip2 $d/truncated.mmdb;");
refused('a search tree that points outside the file',
    qr/the country database "\Q$d\E\/tree.mmdb" is corrupt: The MaxMind DB file's search tree is corrupt/,
    "welby_geoip2 $d/tree.mmdb;");
refused('a data section that does not decode',
    qr/the country database "\Q$d\E\/data.mmdb" is corrupt: /,
    "welby_geoip2 $d/data.mmdb;");

refused('an ASN database given as the country one',
    qr/welby_geoip2: "\Q$d\E\/asn-as-country.mmdb" is a "GeoLite2-ASN" database, not a country database/,
    "welby_geoip2 $d/asn-as-country.mmdb;");
refused('a country database given as the ASN one',
    qr/"\Q$d\E\/country-as-asn.mmdb" is a "GeoLite2-Country" database, not an ASN database/,
    "welby_geoip2 $d/geo.mmdb asn=$d/country-as-asn.mmdb;");
refused('another kind of database (Anonymous-IP)',
    qr/is a "GeoIP2-Anonymous-IP" database, not a country database/,
    "welby_geoip2 $d/anon.mmdb;");
refused('a country type whose records hold no country',
    qr/"\Q$d\E\/empty-country.mmdb" has no record with country.iso_code: not a country database/,
    "welby_geoip2 $d/empty-country.mmdb;");

refused('an unknown parameter',
    qr/invalid parameter "asm=\Q$d\E\/asn.mmdb"/,
    "welby_geoip2 $d/geo.mmdb asm=$d/asn.mmdb;");
refused('two ASN files',
    qr/invalid number of arguments in "welby_geoip2"/,
    "welby_geoip2 $d/geo.mmdb asn=$d/asn.mmdb asn=$d/asn.mmdb;");
refused('welby_geoip2 twice',
    qr/"welby_geoip2" directive is duplicate/, "$DB\n    $DB");
refused('welby_geoip2 in a location',
    qr/"welby_geoip2" directive is not allowed here/, '',
    "welby_geoip2 $d/geo.mmdb;");

###############################################################################
# the lists

passes('allow list', $DB, 'welby_geo_allow JP US DE;');
passes('deny list with welby_geo_unknown deny', $DB,
    "welby_geo_deny CN;\n welby_geo_unknown deny;");
passes('XK (Kosovo, as MaxMind codes it)', $DB, 'welby_geo_allow XK;');
passes('welby_geo_allow off', "$DB\n welby_geo_deny US;",
    'welby_geo_allow off;');

refused('UK, with the hint', qr/invalid country code "UK" in "welby_geo_deny", it must be an ISO 3166-1 alpha-2 code such as "JP" \(the United Kingdom is "GB"\)/,
    $DB, 'welby_geo_deny UK;');
refused('XX', qr/invalid country code "XX" in "welby_geo_allow"/,
    $DB, 'welby_geo_allow JP XX;');
refused('EU', qr/invalid country code "EU"/, $DB, 'welby_geo_deny EU;');
refused('an alpha-3 code', qr/invalid country code "JPN"/,
    $DB, 'welby_geo_allow JPN;');
refused('a digit', qr/invalid country code "J1"/, $DB,
    'welby_geo_allow J1;');
refused('one letter', qr/invalid country code "J"/, $DB,
    'welby_geo_allow J;');

refused('allow and deny in one block',
    qr/"welby_geo_allow" and "welby_geo_deny" in one block/,
    $DB, "welby_geo_allow JP;\n welby_geo_deny US;");
refused('off with codes',
    qr/"welby_geo_allow" directive is duplicate: "off" stands alone/,
    $DB, "welby_geo_allow JP;\n welby_geo_allow off;");
refused('codes after off',
    qr/"welby_geo_deny" directive is duplicate: "off" stands alone/,
    $DB, "welby_geo_deny off;\n welby_geo_deny US;");

refused('an allow list without welby_geoip2',
    qr/"welby_geo_allow" in \Q$d\E\/nginx-t.conf:\d+ needs "welby_geoip2"/,
    '', 'welby_geo_allow JP;');
refused('a deny list at http level without welby_geoip2',
    qr/"welby_geo_deny" in \Q$d\E\/nginx-t.conf:\d+ needs "welby_geoip2"/,
    'welby_geo_deny US;');

refused('welby_geo_unknown maybe',
    qr/invalid value "maybe" in "welby_geo_unknown" directive, it must be "allow" or "deny"/,
    $DB, 'welby_geo_unknown maybe;');

###############################################################################
# a running nginx, and the file under it

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_token off;

    welby_geoip2 geo.mmdb;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            welby_geo_allow JP;
            add_header X-Country $welby_country always;
            root %%TESTDIR%%/html;
        }
    }
}
EOF

$t->write_file('html/index.html', "ok\n");
$t->run();

sub from5 {
    my $r = parse_response(http_req(uri => '/', local => '127.0.5.1'));
    return $r ? $r->status . ' ' . ($r->header('X-Country') // '') : '';
}

is(from5(), '200 JP', 'running: 127.0.5.1 is JP');

# renamed into place, as geoipupdate does
Welby::MMDB::country_db("$d/geo.mmdb", map => \%US);
is(from5(), '200 JP', 'a new file: the workers keep the one they have');

ok($t->reload(), 'reload with the new file');
is(from5(), '403 US', 'after the reload: 127.0.5.1 is US, and refused');

SKIP: {
    skip 'not root: the master cannot open a file its workers cannot', 2
        if $> != 0;

    # the workers run as an unprivileged user; only the master opens it
    chmod 0600, "$d/geo.mmdb";
    Welby::MMDB::country_db("$d/geo.mmdb", map => \%JP);
    chmod 0600, "$d/geo.mmdb";
    ok($t->reload(), 'reload with a file only root can read');
    is(from5(), '200 JP', 'the workers look up in it all the same');
}

chmod 0, "$d/geo.mmdb";
is(from5(), $> == 0 ? '200 JP' : '403 US',
    'mode 0 after start: the workers go on with their mapping');
unlink "$d/geo.mmdb";
is(from5(), $> == 0 ? '200 JP' : '403 US',
    'removed after start: the same');

# a reload that cannot open the file: nginx keeps the old workers
kill 'HUP', $t->{pid};
my @emerg = $t->wait_for_log(qr/\[emerg\].*welby_geoip2: the country database "\Q$d\E\/geo.mmdb" cannot be opened/);
ok(@emerg, 'a reload without the file: [emerg] names it');
is(from5(), $> == 0 ? '200 JP' : '403 US',
    'the old workers still serve, with the old mapping');

Welby::MMDB::country_db("$d/geo.mmdb", map => \%US);
ok($t->reload(), 'the file back: the reload works');
is(from5(), '403 US', 'and the new mapping takes effect');

###############################################################################
# The failed reload's [emerg] is asserted above: move exactly that line to
# expected-errors.log, so that the teardown still checks every other line.

$t->stop();
my (@keep, @moved);
for my $line (split /\n/, $t->read_file('error.log')) {
    if ($line =~ /\[emerg\].*welby_geoip2: the country database "\Q$d\E\/geo.mmdb" cannot be opened/) {
        push @moved, $line;
    } else {
        push @keep, $line;
    }
}
$t->write_file('expected-errors.log', join("\n", @moved, ''));
$t->write_file('error.log', join("\n", @keep, ''));
