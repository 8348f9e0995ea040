package Welby::PKI;

# A throw-away test PKI made with the openssl command line tool (OpenSSL 3):
# server certificates good and weak, staff client certificates good and
# bad, and a CRL.  Debian-packaged Perl only.
#
#   use Welby::PKI;
#   my $pki = Welby::PKI->new($dir);      # builds everything under $dir/pki
#   $pki->cert('alice')->{crt}            # path of the PEM certificate
#   $pki->cert('alice')->{key}            # path of the PEM private key
#   $pki->cert('alice')->{sha256}         # 64 lowercase hex, no colons
#   $pki->cert('alice')->{sha256_colons}  # as openssl prints it: AB:CD:...
#   $pki->cert('alice')->{subject}        # RFC 2253: CN=alice,OU=...,O=...
#   $pki->cert('alice')->{issuer}         # RFC 2253
#   $pki->crl                             # the staff CA's CRL (PEM)
#
# Certificates (name => what):
#
#   ca                 server CA, EC P-256, SHA-256, self-signed
#   server_ec          EC P-256 leaf by ca, SHA-256, localhost / 127.0.0.1
#   server_rsa2048     RSA-2048 leaf by ca, SHA-256
#   server_rsa1024     RSA-1024 leaf by ca, SHA-256
#   server_sha1_self   RSA-2048 self-signed with SHA-1
#   server_sha1_leaf   EC P-256 leaf signed by ca with SHA-1
#   inter_sha1         intermediate CA (EC P-256) signed by ca with SHA-1
#   server_sha1_chain  EC P-256 leaf by inter_sha1 (SHA-256); {crt} is the
#                      full chain (leaf + inter_sha1), {leaf} the leaf only
#   staff_ca           staff (client) CA, EC P-256, SHA-256, self-signed;
#                      issues with "openssl ca"
#   alice              staff client, valid          CN=alice,OU=Clinicians,...
#   bob                staff client, valid          CN=bob,OU=Clinicians,...
#   expired            staff client, expired in 2020
#   revoked            staff client, revoked in the CRL
#   other_ca           another CA, EC P-256
#   wrong_ca           client cert with alice's subject, issued by other_ca
#
# Every openssl failure dies with what openssl printed.

use strict;
use warnings;

use File::Path qw(make_path);
use POSIX ();

my $ORG = 'Welby Test';

sub new {
    my ($class, $dir) = @_;

    my $self = bless { dir => "$dir/pki", certs => {} }, $class;
    make_path($self->{dir});
    $self->_build();
    return $self;
}

sub dir  { $_[0]{dir} }
sub crl  { "$_[0]{dir}/staff-ca.crl" }

sub cert {
    my ($self, $name) = @_;
    my $c = $self->{certs}{$name} or die "Welby::PKI: no certificate '$name'\n";
    return $c;
}

sub names { sort keys %{ $_[0]{certs} } }

###############################################################################

sub _run {
    my ($self, @args) = @_;

    my $out = "$self->{dir}/.openssl.out";
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        { no warnings 'exec'; exec 'openssl', @args; }
        POSIX::_exit(127);
    }

    waitpid($pid, 0);
    my $status = $?;
    my $text = _slurp($out);
    die "Welby::PKI: openssl @args failed (status $status):\n$text"
        if $status != 0;
    return $text;
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    my $c = <$fh>;
    return defined $c ? $c : '';
}

sub _write {
    my ($path, $content) = @_;
    open my $fh, '>', $path or die "Welby::PKI: cannot write $path: $!\n";
    print $fh $content;
    close $fh;
}

sub _newkey {
    my ($type) = @_;
    return ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256')
        if $type eq 'ec';
    return ('-newkey', "rsa:$1") if $type =~ /^rsa(\d+)$/;
    die "Welby::PKI: unknown key type $type\n";
}

# a self-signed CA
sub _ca {
    my ($self, $name, $subj, %o) = @_;
    my $d = $self->{dir};
    $self->_run('req', '-config', "$d/openssl.cnf", '-x509',
        _newkey($o{key} // 'ec'), '-nodes', '-' . ($o{md} // 'sha256'),
        '-days', 2, '-subj', $subj,
        '-extensions', $o{ext} // 'v3_ca',
        '-keyout', "$d/$name.key", '-out', "$d/$name.crt");
    $self->_info($name);
}

# a key and CSR, then a certificate signed by $ca with "openssl x509"
sub _signed {
    my ($self, $name, $subj, $ca, %o) = @_;
    my $d = $self->{dir};
    $self->_run('req', '-config', "$d/openssl.cnf", '-new',
        _newkey($o{key} // 'ec'), '-nodes', '-subj', $subj,
        '-keyout', "$d/$name.key", '-out', "$d/$name.csr");
    $self->_run('x509', '-req', '-in', "$d/$name.csr",
        '-CA', "$d/$ca.crt", '-CAkey', "$d/$ca.key",
        '-set_serial', '0x' . unpack('H*', pack('N', 1 + int rand 2**31)),
        '-' . ($o{md} // 'sha256'), '-days', 2,
        '-extfile', "$d/openssl.cnf", '-extensions', $o{ext} // 'server_ext',
        '-out', "$d/$name.crt");
    $self->_info($name);
}

# a client certificate issued by the staff CA with "openssl ca"
sub _staff {
    my ($self, $name, $subj, @dates) = @_;
    my $d = $self->{dir};
    $self->_run('req', '-config', "$d/openssl.cnf", '-new', _newkey('ec'),
        '-nodes', '-subj', $subj,
        '-keyout', "$d/$name.key", '-out', "$d/$name.csr");
    $self->_run('ca', '-config', "$d/openssl.cnf", '-batch', '-notext',
        '-preserveDN', @dates, '-in', "$d/$name.csr", '-out', "$d/$name.crt");
    $self->_info($name);
}

sub _info {
    my ($self, $name, %extra) = @_;
    my $d = $self->{dir};
    my $crt = "$d/$name.crt";

    my $out = $self->_run('x509', '-in', $crt, '-noout', '-nameopt', 'RFC2253',
        '-subject', '-issuer', '-fingerprint', '-sha256');

    my ($subject) = $out =~ /^subject=\s*(.*?)\s*$/m;
    my ($issuer)  = $out =~ /^issuer=\s*(.*?)\s*$/m;
    my ($fp)      = $out =~ /^sha256 Fingerprint=([0-9A-Fa-f:]+)\s*$/m;
    die "Welby::PKI: cannot parse openssl x509 output for $name:\n$out"
        unless defined $subject && defined $issuer && defined $fp;

    (my $hex = lc $fp) =~ s/://g;

    $self->{certs}{$name} = {
        name          => $name,
        crt           => $crt,
        key           => "$d/$name.key",
        leaf          => $crt,
        subject       => $subject,
        issuer        => $issuer,
        sha256        => $hex,
        sha256_colons => uc $fp,
        %extra,
    };
}

sub _build {
    my ($self) = @_;
    my $d = $self->{dir};

    my $staff = "$d/staff-ca";
    make_path("$staff.db/new");
    _write("$staff.db/index.txt", '');
    _write("$staff.db/serial", "1000\n");
    _write("$staff.db/crlnumber", "1000\n");

    _write("$d/openssl.cnf", <<"EOF");
[ req ]
distinguished_name = req_dn
[ req_dn ]

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1

[ client_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth

[ ca ]
default_ca = staff

[ staff ]
database = $staff.db/index.txt
new_certs_dir = $staff.db/new
serial = $staff.db/serial
crlnumber = $staff.db/crlnumber
certificate = $staff.crt
private_key = $staff.key
default_md = sha256
default_days = 2
default_crl_days = 2
unique_subject = no
policy = policy_any
x509_extensions = client_ext
crl_extensions = crl_ext

[ policy_any ]
commonName = supplied
organizationalUnitName = optional
organizationName = optional

[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF

    # servers
    $self->_ca('ca', "/O=$ORG/CN=Welby Test Server CA");
    $self->_signed('server_ec', "/O=$ORG/CN=localhost", 'ca');
    $self->_signed('server_rsa2048', "/O=$ORG/CN=localhost", 'ca',
        key => 'rsa2048');
    $self->_signed('server_rsa1024', "/O=$ORG/CN=localhost", 'ca',
        key => 'rsa1024');
    $self->_ca('server_sha1_self', "/O=$ORG/CN=localhost",
        key => 'rsa2048', md => 'sha1', ext => 'server_ext');
    $self->_signed('server_sha1_leaf', "/O=$ORG/CN=localhost", 'ca',
        md => 'sha1');
    $self->_signed('inter_sha1', "/O=$ORG/CN=Welby SHA-1 Intermediate", 'ca',
        md => 'sha1', ext => 'v3_ca');
    $self->_signed('server_sha1_chain', "/O=$ORG/CN=localhost", 'inter_sha1');
    my $chain = "$d/server_sha1_chain.fullchain.crt";
    _write($chain, _slurp("$d/server_sha1_chain.crt")
        . _slurp("$d/inter_sha1.crt"));
    $self->{certs}{server_sha1_chain}{crt} = $chain;

    # staff clients
    $self->_ca('staff-ca', "/O=$ORG/CN=Welby Staff CA");
    $self->{certs}{staff_ca} = delete $self->{certs}{'staff-ca'};

    my $ou = "/O=$ORG/OU=Clinicians";
    $self->_staff('alice', "$ou/CN=alice");
    $self->_staff('bob', "$ou/CN=bob");
    $self->_staff('expired', "$ou/CN=carol-expired",
        '-startdate', '20200101000000Z', '-enddate', '20200201000000Z');
    $self->_staff('revoked', "$ou/CN=dave-revoked");
    $self->_run('ca', '-config', "$d/openssl.cnf", '-batch',
        '-revoke', "$d/revoked.crt", '-crl_reason', 'keyCompromise');
    $self->_run('ca', '-config', "$d/openssl.cnf", '-batch', '-gencrl',
        '-out', $self->crl);

    # a certificate with alice's name from a CA the gateway does not trust
    $self->_ca('other_ca', "/O=Elsewhere/CN=Other CA");
    $self->_signed('wrong_ca', "$ou/CN=alice", 'other_ca', ext => 'client_ext');

    return $self;
}

1;
