package Welby::JWT;

# Keys, JWKS files and JWS compact tokens for the token tests (own code,
# Debian-packaged Perl only: CryptX, JSON::XS, MIME::Base64).
#
#   use Welby::JWT qw(gen_key write_jwks write_pem jwt claims b64u);
#
#   my $k = gen_key('ES256', kid => 'es256');
#   write_jwks("$dir/jwks.json", $k, $k2);
#   my $tok = jwt(key => $k, claims => claims(iss => $iss, aud => $aud));
#
# jwt() is deliberately low level: header and payload are hashes (encoded
# canonically) or raw JSON text (so a test can craft duplicate members,
# deep nesting, an exp given as a string), and every part of the result
# can be replaced or altered to build invalid tokens.

use strict;
use warnings;

use Exporter qw(import);
use Carp qw(croak);
use Crypt::Digest::SHA256 qw(sha256);
use Crypt::Mac::HMAC qw(hmac);
use Crypt::PK::ECC;
use Crypt::PK::Ed25519;
use Crypt::PK::RSA;
use Crypt::PRNG qw(random_bytes random_string);
use JSON::XS;
use MIME::Base64 qw(encode_base64url decode_base64url);

our @EXPORT_OK = qw(b64u b64u_decode json_text gen_key public_jwk
    write_jwks write_pem write_secret jwt sign claims header unique_jti
    x5t_s256 now pem private_pem);

my $JSON = JSON::XS->new->utf8->canonical;

# alg => [family, hash, EC curve / HMAC and PSS length]
my %ALG = (
    RS256 => ['RSA', 'SHA256'], RS384 => ['RSA', 'SHA384'],
    RS512 => ['RSA', 'SHA512'],
    PS256 => ['PSS', 'SHA256', 32], PS384 => ['PSS', 'SHA384', 48],
    PS512 => ['PSS', 'SHA512', 64],
    ES256 => ['EC', 'SHA256', 'secp256r1'],
    ES384 => ['EC', 'SHA384', 'secp384r1'],
    ES512 => ['EC', 'SHA512', 'secp521r1'],
    EdDSA => ['OKP'],
    HS256 => ['HMAC', 'SHA256', 32], HS384 => ['HMAC', 'SHA384', 48],
    HS512 => ['HMAC', 'SHA512', 64],
);

my $JTI = 0;

=head1 ENCODING

=head2 b64u($bytes) / b64u_decode($text)

base64url without padding (RFC 7515 section 2).

=head2 json_text($ref_or_text)

A hash or array encoded as canonical JSON (UTF-8); text is returned
as is.

=cut

sub b64u        { encode_base64url($_[0] // '') }
sub b64u_decode { decode_base64url($_[0] // '') }

sub json_text {
    my ($v) = @_;
    return ref $v ? $JSON->encode($v) : $v;
}

sub now { time() }

=head1 KEYS

=head2 gen_key($alg, kid => $kid, bits => $n, curve => $c, secret => $s)

A signing key for $alg (RS*/PS*: RSA, 2048 bits unless C<bits>; ES*: the
curve of the alg unless C<curve>; EdDSA: Ed25519; HS*: C<secret> or
random bytes of the hash length).  Returns a hash: alg, kid, kty, pk
(the CryptX object) or secret.

=cut

sub gen_key {
    my ($alg, %o) = @_;
    my $a = $ALG{$alg} or croak "unknown alg $alg";
    my $k = { alg => $alg, kid => $o{kid} };

    if ($a->[0] eq 'RSA' || $a->[0] eq 'PSS') {
        $k->{kty} = 'RSA';
        $k->{pk} = Crypt::PK::RSA->new;
        $k->{pk}->generate_key(($o{bits} // 2048) / 8, 65537);
    } elsif ($a->[0] eq 'EC') {
        $k->{kty} = 'EC';
        $k->{pk} = Crypt::PK::ECC->new;
        $k->{pk}->generate_key($o{curve} // $a->[2]);
    } elsif ($a->[0] eq 'OKP') {
        $k->{kty} = 'OKP';
        $k->{pk} = Crypt::PK::Ed25519->new;
        $k->{pk}->generate_key;
    } else {
        $k->{kty} = 'oct';
        $k->{secret} = $o{secret} // random_bytes($o{bytes} // $a->[2]);
    }
    return $k;
}

=head2 public_jwk($key, %extra)

The public JWK of a key as a hash: the key members, plus kid, alg and
use "sig" (C<%extra> adds members; an undef value removes one, e.g.
C<alg =E<gt> undef>).  An HMAC key gives an "oct" JWK.

=cut

sub public_jwk {
    my ($k, %extra) = @_;
    my $j;
    if ($k->{kty} eq 'oct') {
        $j = { kty => 'oct', k => b64u($k->{secret}) };
    } else {
        $j = $k->{pk}->export_key_jwk('public', 1);
    }
    $j->{kid} = $k->{kid} if defined $k->{kid};
    $j->{alg} = $k->{alg};
    $j->{use} = 'sig';
    for (keys %extra) {
        if (defined $extra{$_}) { $j->{$_} = $extra{$_} }
        else { delete $j->{$_} }
    }
    return $j;
}

=head2 write_jwks($path, @keys)

Writes {"keys": [...]} with the public JWK of every key (a hash that is
not a key, i.e. has no C<alg>+C<kty>, is written as given).  Returns
the path.

=cut

sub write_jwks {
    my ($path, @keys) = @_;
    my @jwk = map { ($_->{pk} || $_->{secret}) ? public_jwk($_) : $_ } @keys;
    _write($path, $JSON->encode({ keys => \@jwk }) . "\n");
    return $path;
}

=head2 write_pem($path, $key) / pem($key)

The SubjectPublicKeyInfo PEM of an asymmetric key (EC keys with a named
curve).

=cut

sub pem {
    my ($k) = @_;
    return $k->{pk}->export_key_pem('public_x509') if $k->{kty} eq 'RSA';
    return $k->{pk}->export_key_pem('public_short') if $k->{kty} eq 'EC';
    return $k->{pk}->export_key_pem('public');
}

sub write_pem {
    my ($path, $k) = @_;
    _write($path, pem($k));
    return $path;
}

=head2 private_pem($key)

The PKCS#8 private key PEM (for the demo's minting script tests).

=cut

sub private_pem {
    my ($k) = @_;
    return $k->{pk}->export_key_pem('private');
}

=head2 write_secret($path, $key)

Writes the raw HMAC secret bytes.

=cut

sub write_secret {
    my ($path, $k) = @_;
    _write($path, $k->{secret});
    return $path;
}

sub _write {
    my ($path, $data) = @_;
    open my $fh, '>', $path or croak "cannot write $path: $!";
    binmode $fh;
    print $fh $data;
    close $fh or croak "cannot write $path: $!";
}

=head2 x5t_s256($der)

RFC 8705 certificate thumbprint: base64url(SHA-256(DER)).

=cut

sub x5t_s256 { b64u(sha256($_[0])) }

=head1 TOKENS

=head2 sign($alg, $key, $input)

The JWS signature bytes of $input: RS* PKCS#1 v1.5, PS* PSS with a salt
of the hash length, ES* raw r||s (RFC 7518 section 3.4), EdDSA, HS*
(with the key's secret, or with C<$key> itself when it is a plain
string: the alg-confusion attack signs with a public key PEM).

=cut

sub sign {
    my ($alg, $k, $input) = @_;
    my $a = $ALG{$alg} or croak "cannot sign with alg $alg";
    my $f = $a->[0];

    if ($f eq 'HMAC') {
        my $secret = ref $k ? $k->{secret} : $k;
        return hmac($a->[1], $secret, $input);
    }
    return $k->{pk}->sign_message($input, $a->[1], 'v1.5') if $f eq 'RSA';
    return $k->{pk}->sign_message($input, $a->[1], 'pss', $a->[2])
        if $f eq 'PSS';
    return $k->{pk}->sign_message_rfc7518($input, $a->[1]) if $f eq 'EC';
    return $k->{pk}->sign_message($input);
}

=head2 unique_jti()

A jti no other token of this process has.

=cut

sub unique_jti {
    return sprintf('jti-%d-%d-%s', $$, ++$JTI, random_string(8));
}

=head2 claims(%override)

The claims of a valid SMART-on-FHIR style access token: iss, sub, aud,
exp (now + 300), iat (now), jti (unique), client_id, scope, patient.
C<%override> replaces members; an undef value removes one.

=cut

sub claims {
    my (%o) = @_;
    my $now = now();
    my %c = (
        iss => 'https://issuer.test',
        sub => 'user-1',
        aud => 'https://fhir.test',
        exp => $now + 300,
        iat => $now,
        jti => unique_jti(),
        client_id => 'client-1',
        scope => 'patient/*.read',
        patient => 'p1',
    );
    for (keys %o) {
        if (defined $o{$_}) { $c{$_} = $o{$_} }
        else { delete $c{$_} }
    }
    return \%c;
}

=head2 header($key, %override)

{alg, typ: "at+jwt", kid} for a key (kid only when the key has one);
overrides as for claims().

=cut

sub header {
    my ($k, %o) = @_;
    my %h = (alg => $k->{alg}, typ => 'at+jwt');
    $h{kid} = $k->{kid} if defined $k->{kid};
    for (keys %o) {
        if (defined $o{$_}) { $h{$_} = $o{$_} }
        else { delete $h{$_} }
    }
    return \%h;
}

=head2 jwt(%o)

Builds a JWS compact token.

  key        signing key (default header and alg come from it)
  header     hash or raw JSON text (default header($key, %{hdr}))
  hdr        overrides for the default header (hash)
  claims     hash or raw JSON text (default claims(%{set}))
  set        overrides for the default claims (hash)
  alg        sign with this alg (default: the header's alg, else the key's)
  secret     sign HS* with these bytes instead of the key (alg confusion)
  sig        the signature bytes to use (no signing)
  sig_b64    the encoded signature text to use
  h64, p64   the encoded header / payload text to use
  edit       sub { my ($h64, $p64, $s64) = @_; ...; return ($h64, $p64,
             $s64) } applied last (after signing)

Returns the token text (a single value in any context).

=cut

sub jwt {
    my (%o) = @_;
    my $k = $o{key};

    my $hdr = exists $o{header} ? $o{header}
        : header($k || croak('jwt: key or header needed'), %{ $o{hdr} || {} });
    my $pay = exists $o{claims} ? $o{claims} : claims(%{ $o{set} || {} });

    my $h64 = $o{h64} // b64u(json_text($hdr));
    my $p64 = $o{p64} // b64u(json_text($pay));

    my $s64;
    if (defined $o{sig_b64}) {
        $s64 = $o{sig_b64};
    } elsif (defined $o{sig}) {
        $s64 = b64u($o{sig});
    } else {
        my $alg = $o{alg};
        $alg //= $hdr->{alg}
            if ref $hdr eq 'HASH' && defined $hdr->{alg} && !ref $hdr->{alg}
            && $ALG{ $hdr->{alg} };
        $alg //= $k->{alg};
        $s64 = b64u(sign($alg, defined $o{secret} ? $o{secret} : $k,
            "$h64.$p64"));
    }

    ($h64, $p64, $s64) = $o{edit}->($h64, $p64, $s64) if $o{edit};

    # always one value: tokens are built inside lists (test tables)
    return "$h64.$p64.$s64";
}

1;
