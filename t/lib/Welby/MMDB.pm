package Welby::MMDB;

# MaxMind DB files for the tests and the demo, built with Debian's
# MaxMind::DB::Writer (libmaxmind-db-writer-perl): a country database
# (GeoLite2-Country layout, country.iso_code) and an ASN database
# (GeoLite2-ASN layout, autonomous_system_number), both IPv6 trees that
# hold IPv4 networks in ::/96, as MaxMind's own files do.
#
#   use Welby::MMDB;
#
#   Welby::MMDB::country_db("$dir/country.mmdb");      # the default map
#   Welby::MMDB::asn_db("$dir/asn.mmdb");
#   Welby::MMDB::country_db("$dir/other.mmdb",
#       map => { '127.0.1.0/24' => 'US' });             # a map of its own
#
# The default map, which every test that needs countries shares:
#
#   127.0.0.0/24   JP  AS64500  (the tests' own 127.0.0.1: at home)
#   127.0.1.0/24   JP  AS64501
#   127.0.2.0/24   US  AS64502
#   127.0.3.0/24   DE  AS64503
#   127.0.4.0/24   JP  AS64504  (another network of the same country)
#   127.0.9.0/24   -            (in no record: unknown country, no ASN)
#   ::1/128        DE  AS64510
#
# From a script (conf/demo/run, say):
#
#   perl -I t/lib -MWelby::MMDB -e 'Welby::MMDB::country_db($ARGV[0])' f.mmdb
#
# Only loopback ranges: the tests talk to 127.0.0.0/8 and ::1 only.

use strict;
use warnings;

use Exporter qw(import);
use File::Basename qw(dirname);
use File::Temp qw(tempfile);
use MaxMind::DB::Writer::Tree;

our @EXPORT_OK = qw(country_db asn_db %COUNTRY %ASN);

our %COUNTRY = (
    '127.0.0.0/24' => 'JP',
    '127.0.1.0/24' => 'JP',
    '127.0.2.0/24' => 'US',
    '127.0.3.0/24' => 'DE',
    '127.0.4.0/24' => 'JP',
    '::1/128'      => 'DE',
);

our %ASN = (
    '127.0.0.0/24' => 64500,
    '127.0.1.0/24' => 64501,
    '127.0.2.0/24' => 64502,
    '127.0.3.0/24' => 64503,
    '127.0.4.0/24' => 64504,
    '::1/128'      => 64510,
);

# what the records of GeoLite2 files hold, as their types
my %TYPES = (
    country                        => 'map',
    registered_country             => 'map',
    continent                      => 'map',
    names                          => 'map',
    iso_code                       => 'utf8_string',
    code                           => 'utf8_string',
    en                             => 'utf8_string',
    geoname_id                     => 'uint32',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);

sub _tree {
    my (%o) = @_;
    my $v = $o{ip_version} // 6;
    my %types = (%TYPES, %{ $o{types} // {} });
    return MaxMind::DB::Writer::Tree->new(
        ip_version               => $v,
        record_size              => $o{record_size} // 24,
        database_type            => $o{type},
        languages                => ['en'],
        description              => { en => "welby test $o{type}" },
        # 127.0.0.0/8 and ::1 are reserved: kept here on purpose
        remove_reserved_networks => 0,
        # an IPv4 tree has no IPv6 ranges to alias
        alias_ipv6_to_ipv4       => $v == 6 ? $o{alias} // 1 : 0,
        map_key_type_callback    => sub { $types{ $_[0] } // 'utf8_string' },
    );
}

# written next to the file and renamed into place, as geoipupdate does:
# nginx maps the file, and a file rewritten in place under a mapping
# changes (or, truncated, faults) what the workers read
sub _write {
    my ($tree, $path) = @_;
    my ($fh, $tmp) = tempfile('.mmdb-XXXXXXXX', DIR => dirname($path));
    binmode $fh;
    $tree->write_tree($fh);
    close $fh or die "cannot write $tmp: $!\n";
    chmod 0644, $tmp;
    rename $tmp, $path or die "cannot rename $tmp to $path: $!\n";
    return $path;
}

=head2 country_db($path, [map => {cidr => code}], [type => ...],
[alias => 0|1], [record_size => 24|28|32], [records => {cidr => {...}}],
[ip_version => 4|6], [types => {key => type}])

Writes a country database to $path (through a temporary file renamed
into place) and returns $path.  C<map> replaces the default map;
C<type> the database_type (default GeoLite2-Country); C<alias> 0 leaves
::ffff:0:0/96 without the IPv4 alias MaxMind's files have (so only a
reader that maps a v4-mapped address to IPv4 itself finds it);
C<records> gives whole records for some networks (a record without
C<country>, say), added after the map.  C<ip_version> 4 writes an
IPv4-only tree (no IPv6 network in the map then: not ::1); C<types>
overrides the MMDB type of a map key (C<iso_code =E<gt> 'uint32'>), for
files that are not what their type says.

=cut

sub country_db {
    my ($path, %o) = @_;
    my $map = $o{map} // \%COUNTRY;
    my $tree = _tree(type => $o{type} // 'GeoLite2-Country', %o);

    for my $net (sort keys %$map) {
        $tree->insert_network($net, {
            country => {
                iso_code => $map->{$net},
                names    => { en => "country $map->{$net}" },
            },
        });
    }

    for my $net (sort keys %{ $o{records} // {} }) {
        $tree->insert_network($net, $o{records}{$net});
    }

    return _write($tree, $path);
}

=head2 asn_db($path, [map => {cidr => number}], [type => ...], [alias => ...])

Writes an ASN database (default GeoLite2-ASN) to $path and returns it.

=cut

sub asn_db {
    my ($path, %o) = @_;
    my $map = $o{map} // \%ASN;
    my $tree = _tree(type => $o{type} // 'GeoLite2-ASN', %o);

    for my $net (sort keys %$map) {
        $tree->insert_network($net, {
            autonomous_system_number       => $map->{$net},
            autonomous_system_organization => "Example AS$map->{$net}",
        });
    }

    return _write($tree, $path);
}

1;
