#!/usr/bin/perl

# Configuration checks of the TLS features, with "nginx -t" (nginx is never
# started): the certificate check of welby_tls_certificate_check (SHA-1
# signatures, small keys, certificates named by variables) and the
# argument errors of the new directives.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx;
use Welby::PKI;

my $t = Welby::Nginx->new();
my $d = $t->testdir();
my $pki = Welby::PKI->new($d);
my $REPO = $Welby::Nginx::REPO;
my $N = 0;

# OpenSSL at security level 0, so that nginx itself loads an RSA-1024 or a
# CA-signed SHA-1 certificate (Debian's default level 2 refuses them with
# "ee key too small" / "ca md too weak") and what refuses it is the module
$t->write_file('openssl-seclevel0.cnf', <<'EOF');
openssl_conf = welby_test

[ welby_test ]
ssl_conf = welby_test_ssl

[ welby_test_ssl ]
system_default = welby_test_system

[ welby_test_system ]
CipherString = DEFAULT:@SECLEVEL=0
EOF
my $SECLEVEL0 = "$d/openssl-seclevel0.cnf";

# A config with one HTTPS server using certificate $cert (a Welby::PKI
# name, or a hash with crt and key) and the shipped include; snippets at
# http, server and location level; "welby on" in location / unless
# no_welby => 1.  Runs nginx -t (with OPENSSL_CONF when
# seclevel0 => 1) and returns (exit code, output).
sub conf {
    my (%s) = @_;
    my $name = "test-" . ++$N . ".conf";
    $s{$_} //= '' for qw(http server location);
    $s{location} = "welby on;\n$s{location}" unless $s{no_welby};

    my ($crt, $key) = ('', '');
    if (my $c = $s{cert}) {
        $c = $pki->cert($c) unless ref $c;
        ($crt, $key) = ($c->{crt}, $c->{key});
    }
    # the shipped include (unless no_include => 1) brings a "welby on"
    # location of its own, @welby_tls_refused
    my $ssl = $s{cert}
        ? "ssl_certificate $crt;\n        ssl_certificate_key $key;\n"
        . ($s{no_include} ? '' : "        include $REPO/conf/welby-tls.conf;")
        : '';
    my $listen = $s{cert} ? ' ssl' : '';

    $t->write_file_expand($name, <<"EOF");
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_token off;
    $s{http}

    server {
        listen 127.0.0.1:%%PORT_8443%%$listen;
        $ssl
        $s{server}

        location / {
            $s{location}
            return 204;
        }

        location /other/ {
            return 204;
        }
    }
}
EOF

    local $ENV{OPENSSL_CONF} = $SECLEVEL0 if $s{seclevel0};
    return $t->test_config($name);
}

sub passes {
    my ($what, %s) = @_;
    my ($code, $out) = conf(%s);
    is($code, 0, "$what: nginx -t passes") or diag($out);
}

# a certificate refusal: nginx -t fails with the module's message, which
# names the file and matches $problem
sub cert_refused {
    my ($what, $problem, %s) = @_;
    my ($code, $out) = conf(%s);
    my $c = ref $s{cert} ? $s{cert} : $pki->cert($s{cert});
    isnt($code, 0, "$what: nginx -t fails") or diag($out);
    my ($line) = $out =~ /^(.*\[emerg\] welby: .*)$/m;
    like($line // '', $problem, "$what: the welby: [emerg] names the problem")
        or diag($out);
    like($line // '', qr/\Q$c->{crt}\E/,
        "$what: the welby: [emerg] names the certificate file") or diag($out);
}

# a directive error: nginx -t fails with an [emerg] about that directive or
# value, not an "unknown directive"
sub refused {
    my ($what, $re, %s) = @_;
    my ($code, $out) = conf(%s);
    isnt($code, 0, "$what: nginx -t fails") or diag($out);
    ok($out =~ /\[emerg\][^\n]*$re/ && $out !~ /unknown directive/,
        "$what: the [emerg] is about it (not an unknown directive)")
        or diag($out);
}

$t->plan(69);

###############################################################################
# the certificate check

my $SHA1 = qr/SHA-?1/i;

cert_refused('SHA-1 self-signed RSA-2048 leaf', $SHA1,
    cert => 'server_sha1_self');

cert_refused('RSA-1024 leaf (OpenSSL at level 0)', qr/\b1024\b/,
    cert => 'server_rsa1024', seclevel0 => 1);

cert_refused('EC leaf signed by the CA with SHA-1 (OpenSSL at level 0)',
    $SHA1, cert => 'server_sha1_leaf', seclevel0 => 1);

cert_refused('SHA-256 leaf with a SHA-1 intermediate in the chain file '
    . '(OpenSSL at level 0)', $SHA1,
    cert => 'server_sha1_chain', seclevel0 => 1);

# the location inherits welby on from the http level
cert_refused('SHA-1 leaf, welby on inherited from http', $SHA1,
    cert => 'server_sha1_self', http => 'welby on;', no_welby => 1);

# at the default security level nginx itself refuses the RSA-1024 leaf
# (before the module could): the check is then OpenSSL's, nginx -t fails
{
    my ($code, $out) = conf(cert => 'server_rsa1024');
    isnt($code, 0, 'RSA-1024 leaf at the default OpenSSL level: nginx -t fails')
        or diag($out);
}

# welby_tls_certificate_check off skips the check

passes('SHA-1 self-signed, welby_tls_certificate_check off in the server',
    cert => 'server_sha1_self', server => 'welby_tls_certificate_check off;');
passes('SHA-1 self-signed, welby_tls_certificate_check off at http level',
    cert => 'server_sha1_self', http => 'welby_tls_certificate_check off;');
passes('RSA-1024, welby_tls_certificate_check off (OpenSSL at level 0)',
    cert => 'server_rsa1024', seclevel0 => 1,
    server => 'welby_tls_certificate_check off;');
passes('SHA-1 chain, welby_tls_certificate_check off (OpenSSL at level 0)',
    cert => 'server_sha1_chain', seclevel0 => 1,
    server => 'welby_tls_certificate_check off;');

# servers the check does not concern

# (without the shipped include: its @welby_tls_refused is a "welby on"
# location with welby_tls required, which makes any server that includes
# it a protected one)

passes('SHA-1 self-signed in a server without a welby location',
    cert => 'server_sha1_self', no_welby => 1, no_include => 1);
passes('RSA-1024 in a server without a welby location (OpenSSL at level 0)',
    cert => 'server_rsa1024', seclevel0 => 1, no_welby => 1, no_include => 1);
passes('SHA-1 self-signed, the only welby location has welby_tls off',
    cert => 'server_sha1_self', location => 'welby_tls off;',
    no_include => 1);
passes('SHA-1 self-signed, welby_tls off for the whole server',
    cert => 'server_sha1_self', server => 'welby_tls off;');
passes('SHA-1 self-signed, welby on but welby_tls off at http level',
    cert => 'server_sha1_self', http => 'welby_tls off;');

# good certificates

passes('EC P-256 leaf signed with SHA-256', cert => 'server_ec');
passes('RSA-2048 leaf signed with SHA-256', cert => 'server_rsa2048');
passes('EC P-256 leaf (OpenSSL at level 0)', cert => 'server_ec',
    seclevel0 => 1);
passes('a CA certificate (self-signed, SHA-256) as the server certificate',
    cert => 'ca');

# two certificates in one server: the bad one is found

{
    my $sha1 = $pki->cert('server_sha1_self');
    my ($code, $out) = conf(cert => 'server_ec',
        server => "ssl_certificate $sha1->{crt};\n"
            . "        ssl_certificate_key $sha1->{key};");
    isnt($code, 0, 'EC and SHA-1 RSA certificates in one server: nginx -t fails')
        or diag($out);
    like($out, qr/\[emerg\] welby: .*\Q$sha1->{crt}\E/,
        'EC and SHA-1 RSA certificates: the message names the SHA-1 file')
        or diag($out);
}

# certificates named by variables cannot be checked: refused unless off

{
    my $c = { crt => "$d/pki/\$ssl_server_name.crt",
              key => "$d/pki/\$ssl_server_name.key" };
    my ($code, $out) = conf(cert => $c);
    isnt($code, 0, 'ssl_certificate with a variable: nginx -t fails')
        or diag($out);
    like($out, qr/\[emerg\] welby: /,
        'ssl_certificate with a variable: the module says why') or diag($out);

    passes('ssl_certificate with a variable, welby_tls_certificate_check off',
        cert => $c, server => 'welby_tls_certificate_check off;');
}

###############################################################################
# the directives: valid forms

passes('every new directive in its valid forms',
    cert => 'server_ec',
    http => 'welby_tls required; welby_tls_min TLSv1.2;'
        . ' welby_hsts max-age=0 includeSubDomains;'
        . ' welby_client_cert off; welby_tls_certificate_check on;'
        . ' welby_trusted_proxy 10.0.0.0/8 192.0.2.1 ::1 unix:;',
    server => 'welby_tls_min TLSv1.3; welby_hsts off;'
        . ' welby_client_cert optional;'
        . ' welby_trusted_proxy 127.0.0.1 proto_header=X-Proto'
        . ' protocol_header=X-Tls-Version request_id=on;'
        . ' welby_tls_certificate_check on;',
    location => 'welby_tls off;'
        . ' welby_hsts max-age=63072000 includeSubDomains preload;'
        . ' welby_client_cert required;'
        . ' welby_client_cert_allow "subject=CN=alice,OU=Clinicians,O=Welby Test";'
        . ' welby_client_cert_allow "issuer=CN=Welby Staff CA,O=Welby Test"'
        . ' sha256=' . $pki->cert('bob')->{sha256_colons} . ';'
        . ' welby_client_cert_allow sha256=' . $pki->cert('bob')->{sha256}
        . ' "subject=CN=bob,OU=Clinicians,O=Welby Test"'
        . ' "issuer=CN=Welby Staff CA,O=Welby Test";');

###############################################################################
# the directives: errors

refused('welby_tls_min TLSv1.1', qr/(?:welby_tls_min|TLSv1\.1)/,
    location => 'welby_tls_min TLSv1.1;');
refused('welby_tls_min SSLv3', qr/(?:welby_tls_min|SSLv3)/,
    location => 'welby_tls_min SSLv3;');
refused('welby_tls maybe', qr/(?:welby_tls\b|maybe)/,
    location => 'welby_tls maybe;');
refused('welby_client_cert sometimes', qr/(?:welby_client_cert\b|sometimes)/,
    location => 'welby_client_cert sometimes;');
refused('welby_client_cert_allow sha256=xyz',
    qr/(?:welby_client_cert_allow|xyz)/,
    location => 'welby_client_cert_allow sha256=xyz;');
refused('welby_client_cert_allow sha256 of 63 hex digits',
    qr/(?:welby_client_cert_allow|sha256)/,
    location => 'welby_client_cert_allow sha256='
        . substr($pki->cert('bob')->{sha256}, 1) . ';');
refused('welby_client_cert_allow foo=bar', qr/(?:welby_client_cert_allow|foo)/,
    location => 'welby_client_cert_allow foo=bar;');
refused('welby_client_cert_allow without parameters',
    qr/welby_client_cert_allow/,
    location => 'welby_client_cert_allow;');
refused('welby_trusted_proxy not-an-ip', qr/(?:welby_trusted_proxy|not-an-ip)/,
    server => 'welby_trusted_proxy not-an-ip;');
refused('welby_trusted_proxy with an unknown parameter',
    qr/(?:welby_trusted_proxy|bogus)/,
    server => 'welby_trusted_proxy 127.0.0.1 bogus=1;');
refused('welby_trusted_proxy request_id=yes',
    qr/welby_trusted_proxy: invalid value "request_id=yes", request_id= takes "on" or "off"/,
    server => 'welby_trusted_proxy 127.0.0.1 request_id=yes;');
{
    my ($code, $out) = conf(location =>
        'welby_trusted_proxy 127.0.0.1 request_id=on;');
    ok($code == 0 && $out =~ /\[warn\] welby_trusted_proxy: request_id=on is ignored in a location/,
        'welby_trusted_proxy request_id=on in a location: nginx -t passes '
        . 'with a [warn] that it is ignored') or diag($out);
    ($code, $out) = conf(server =>
        'welby_trusted_proxy 127.0.0.1 request_id=on;');
    ok($code == 0 && $out !~ /request_id=on is ignored/,
        'welby_trusted_proxy request_id=on in a server: no such warning')
        or diag($out);
}
refused('welby_hsts max-age=abc', qr/(?:welby_hsts|abc)/,
    location => 'welby_hsts max-age=abc;');
refused('welby_hsts max-age=1 bogus', qr/(?:welby_hsts|bogus)/,
    location => 'welby_hsts max-age=1 bogus;');
refused('welby_tls_certificate_check in a location',
    qr/"welby_tls_certificate_check" directive is not allowed here/,
    cert => 'server_ec', location => 'welby_tls_certificate_check off;');

###############################################################################
# welby_client_cert in a server that asks for no certificate: allowed (the
# locations refuse every request, closed), but nginx -t says why

my $NO_VERIFY = qr/\[warn\] welby: server .*welby_client_cert locations but no ssl_verify_client/;
{
    my ($code, $out) = conf(cert => 'server_ec',
        location => 'welby_client_cert required;');
    is($code, 0, 'welby_client_cert without ssl_verify_client: nginx -t passes')
        or diag($out);
    like($out, $NO_VERIFY,
        'welby_client_cert without ssl_verify_client: a [warn] says why')
        or diag($out);

    my $ca = $pki->cert('staff_ca')->{crt};
    ($code, $out) = conf(cert => 'server_ec',
        server => "ssl_verify_client optional;\n"
            . "        ssl_client_certificate $ca;",
        location => 'welby_client_cert required;');
    ok($code == 0 && $out !~ $NO_VERIFY,
        'welby_client_cert with ssl_verify_client optional: no warning')
        or diag($out);

    ($code, $out) = conf(cert => 'server_ec');
    ok($code == 0 && $out !~ $NO_VERIFY,
        'the include\'s own refusal location does not count as asking')
        or diag($out);
}
