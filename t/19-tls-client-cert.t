#!/usr/bin/perl

# Staff client certificates (welby_client_cert, welby_client_cert_allow,
# $welby_client_cert_sha256): none, valid and allowed, valid and not on the
# allowlist, expired, from another CA, revoked by the CRL; with nginx's
# ssl_verify_client optional (nginx's own 495 routed to the module by
# conf/welby-tls.conf), optional_no_ca (the module judges the verify
# result) and on (496).  Each refusal: status, reason and audit record.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Welby::Nginx qw(http_req parse_response);
use Welby::PKI;

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $pki = Welby::PKI->new($d);
my %C = map { $_ => $pki->cert($_) }
    qw(server_ec staff_ca alice bob expired revoked wrong_ca);
my $REPO = $Welby::Nginx::REPO;

my %V = (
    SERVER_CRT => $C{server_ec}{crt},
    SERVER_KEY => $C{server_ec}{key},
    STAFF_CA   => $C{staff_ca}{crt},
    CRL        => $pki->crl,
    REPO       => $REPO,
    ALICE_DN   => $C{alice}{subject},
    BOB_DN     => $C{bob}{subject},
    STAFF_DN   => $C{staff_ca}{subject},
    BOB_FP     => $C{bob}{sha256_colons},       # AB:CD:... upper case
    ALICE_FP   => $C{alice}{sha256},            # lower case, no colons
);

(my $conf = <<'EOF') =~ s/%%([A-Z_]+)%%/exists $V{$1} ? $V{$1} : "%%$1%%"/ge;
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_token off;    # tokens: t/10-token.t
    welby_audit_log %%TESTDIR%%/audit.log;

    # ssl_verify_client optional: nginx verifies, a failed certificate is
    # nginx's 495 (routed to the module by the include)
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name localhost;
        ssl_certificate     %%SERVER_CRT%%;
        ssl_certificate_key %%SERVER_KEY%%;
        ssl_verify_client optional;
        ssl_client_certificate %%STAFF_CA%%;
        ssl_crl %%CRL%%;
        include %%REPO%%/conf/welby-tls.conf;

        add_header X-Cert-Sha256 $welby_client_cert_sha256 always;
        add_header X-Reason $welby_reason always;

        # inherited by the locations without a list of their own
        welby_client_cert_allow "subject=%%BOB_DN%%";

        location /admin/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow "subject=%%ALICE_DN%%";
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /pin/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow sha256=%%BOB_FP%%;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /issuer/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow "issuer=%%STAFF_DN%%";
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # params of one line: AND (alice's subject and her fingerprint)
        location /and/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow "subject=%%ALICE_DN%%"
                                    "issuer=%%STAFF_DN%%" sha256=%%ALICE_FP%%;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # AND: alice's subject with bob's fingerprint matches nobody
        location /nobody/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow "subject=%%ALICE_DN%%" sha256=%%BOB_FP%%;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # lines: OR
        location /either/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow "subject=%%ALICE_DN%%";
            welby_client_cert_allow sha256=%%BOB_FP%%;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # the server's list (bob only) is inherited
        location /inherited/ {
            welby on;
            welby_client_cert required;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /staff/ {
            welby on;
            welby_client_cert optional;
            welby_client_cert_allow "issuer=%%STAFF_DN%%";
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /open/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /nowelby/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # optional_no_ca: nginx lets an unverifiable certificate through
    server {
        listen 127.0.0.1:%%PORT_8444%% ssl;
        server_name localhost;
        ssl_certificate     %%SERVER_CRT%%;
        ssl_certificate_key %%SERVER_KEY%%;
        ssl_verify_client optional_no_ca;
        ssl_client_certificate %%STAFF_CA%%;
        include %%REPO%%/conf/welby-tls.conf;

        add_header X-Reason $welby_reason always;

        location /admin/ {
            welby on;
            welby_client_cert required;
            welby_client_cert_allow "subject=%%ALICE_DN%%";
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /staff/ {
            welby on;
            welby_client_cert optional;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /open/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    # ssl_verify_client on: no certificate is nginx's 496
    server {
        listen 127.0.0.1:%%PORT_8445%% ssl;
        server_name localhost;
        ssl_certificate     %%SERVER_CRT%%;
        ssl_certificate_key %%SERVER_KEY%%;
        ssl_verify_client on;
        ssl_client_certificate %%STAFF_CA%%;
        include %%REPO%%/conf/welby-tls.conf;

        add_header X-Reason $welby_reason always;

        location /open/ {
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
$t->write_file_expand('nginx.conf', $conf);

$t->run()->plan(67);

my $HSTS = 'max-age=31536000; includeSubDomains';

sub records {
    my @r;
    for my $line (split /\n/, $t->read_file('audit.log')) {
        push @r, eval { decode_json($line) } // { bad => $line };
    }
    return @r;
}

# the one audit record of a response (by its X-Request-Id), {} if none
sub audit {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return {};
    my @a = grep { ($_->{id} // '') eq $id } records();
    return @a == 1 ? $a[0] : {};
}

# GET $path on $port with client certificate $who ('none': without)
sub creq {
    my ($port, $who, $path) = @_;
    return parse_response(http_req(uri => $path, port => $t->port($port),
        ssl => 1,
        $who ne 'none' ? (SSL_cert_file => $C{$who}{crt},
                          SSL_key_file  => $C{$who}{key}) : ()));
}

sub status_reason {
    my ($r) = @_;
    return 'no response' unless $r;
    my $reason = $r->header('X-Reason') // '';
    my $j = $r->json;
    my $code = $j && eval { $j->{issue}[0]{details}{coding}[0]{code} };
    # the reason must be the same in $welby_reason and the OperationOutcome
    $reason .= " (body: " . ($code // 'none') . ")"
        if $r->status != 200 && ($code // '') ne $reason;
    return $r->status . ($reason ne '' ? " $reason" : '');
}

# audit: "reason client_cert cert_sha256 client_cert_error" ('-' = absent)
sub audit_line {
    my ($r) = @_;
    my $a = audit($r);
    return 'no record' unless %$a;
    return join ' ', map { $_ // '-' } $a->{reason}, $a->{tls}{client_cert},
        $a->{agent}{cert_sha256}, $a->{tls}{client_cert_error};
}

###############################################################################
# ssl_verify_client optional

# no certificate

my $r = creq(8443, 'none', '/admin/x');
is(status_reason($r), '403 client_cert_required',
    'no certificate, /admin/ (required): 403 client_cert_required');
is(audit_line($r), 'client_cert_required none - -',
    'no certificate, /admin/: audit reason, client_cert none, no cert_sha256');
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    'no certificate, /admin/: the refusal has HSTS');
is($r && $r->header('X-Cert-Sha256') // '', '',
    'no certificate: $welby_client_cert_sha256 is empty');

$r = creq(8443, 'none', '/staff/x');
is(status_reason($r), '200', 'no certificate, /staff/ (optional): 200');
is(audit_line($r), '- none - -', 'no certificate, /staff/: audit client_cert none');

$r = creq(8443, 'none', '/open/x');
is(status_reason($r), '200', 'no certificate, /open/ (off): 200');

# alice: valid, on the /admin/ list

for my $p (qw(/admin/ /issuer/ /and/ /either/ /staff/ /open/)) {
    $r = creq(8443, 'alice', "${p}x");
    is(status_reason($r), '200', "alice, $p: 200");
}

$r = creq(8443, 'alice', '/admin/x');
is(audit_line($r), "- verified $C{alice}{sha256} -",
    'alice, /admin/: audit client_cert verified, agent.cert_sha256 her '
    . 'SHA-256 fingerprint');
is($r && $r->header('X-Cert-Sha256'), $C{alice}{sha256},
    'alice: $welby_client_cert_sha256 is the lowercase hex SHA-256 of her '
    . 'certificate');
my $a = audit($r);
like($a->{tls}{protocol} // '', qr/^TLSv1\.[23]$/,
    'alice, /admin/: audit tls.protocol is there too');

$r = creq(8443, 'alice', '/nowelby/x');
ok($r && $r->status == 200
    && ($r->header('X-Cert-Sha256') // '') eq $C{alice}{sha256},
    'alice: $welby_client_cert_sha256 works in a location without welby');

for my $p (qw(/pin/ /nobody/ /inherited/)) {
    $r = creq(8443, 'alice', "${p}x");
    is(status_reason($r), '403 client_cert_not_allowed',
        "alice, $p (not on its list): 403 client_cert_not_allowed");
}

# bob: valid, not on the /admin/ list

$r = creq(8443, 'bob', '/admin/x');
is(status_reason($r), '403 client_cert_not_allowed',
    'bob, /admin/: 403 client_cert_not_allowed');
is(audit_line($r), "client_cert_not_allowed verified $C{bob}{sha256} -",
    'bob, /admin/: audit reason, client_cert verified, his cert_sha256');
is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
    'bob, /admin/: the refusal has HSTS');
is($r && $r->header('X-Cert-Sha256'), $C{bob}{sha256},
    'bob, /admin/: $welby_client_cert_sha256 on the refusal');

for my $p (qw(/pin/ /issuer/ /either/ /inherited/ /staff/ /open/)) {
    $r = creq(8443, 'bob', "${p}x");
    is(status_reason($r), '200', "bob, $p: 200");
}

for my $p (qw(/and/ /nobody/)) {
    $r = creq(8443, 'bob', "${p}x");
    is(status_reason($r), '403 client_cert_not_allowed',
        "bob, $p: 403 client_cert_not_allowed");
}

# certificates that fail verification: nginx's 495 for any location

my %ERR = (expired => qr/^10$/, wrong_ca => qr/^2[01]$/, revoked => qr/^23$/);

for my $who (qw(expired wrong_ca revoked)) {
    for my $p (qw(/admin/ /staff/ /open/)) {
        $r = creq(8443, $who, "${p}x");
        is(status_reason($r), '403 client_cert_invalid',
            "$who, $p: 403 client_cert_invalid");
    }

    $r = creq(8443, $who, '/open/x');
    $a = audit($r);
    is(join(' ', map { $_ // '-' } $a->{reason}, $a->{outcome},
            $a->{http}{status}, $a->{tls}{client_cert}),
        'client_cert_invalid deny 403 failed',
        "$who: audit reason, outcome, status, client_cert failed");
    like($a->{tls}{client_cert_error} // '', $ERR{$who},
        "$who: audit tls.client_cert_error is the X509 error ($ERR{$who})");
    is($a->{agent}{cert_sha256}, $C{$who}{sha256},
        "$who: audit agent.cert_sha256 is the certificate's fingerprint");
    is($r && $r->header('X-Cert-Sha256'), $C{$who}{sha256},
        "$who: \$welby_client_cert_sha256 is set for an unverified certificate");
    is(join('|', $r->header('Strict-Transport-Security')), $HSTS,
        "$who: the refusal has HSTS");
}

###############################################################################
# ssl_verify_client optional_no_ca: the module refuses what failed

$r = creq(8444, 'wrong_ca', '/admin/x');
is(status_reason($r), '403 client_cert_invalid',
    "optional_no_ca, another CA's certificate with alice's subject, /admin/: "
    . '403 client_cert_invalid');
$a = audit($r);
is(join(' ', map { $_ // '-' } $a->{reason}, $a->{tls}{client_cert},
        $a->{agent}{cert_sha256}),
    "client_cert_invalid failed $C{wrong_ca}{sha256}",
    'optional_no_ca, /admin/: audit reason, client_cert failed, cert_sha256');
like($a->{tls}{client_cert_error} // '', $ERR{wrong_ca},
    'optional_no_ca, /admin/: audit client_cert_error 20 or 21');

$r = creq(8444, 'wrong_ca', '/staff/x');
is(status_reason($r), '403 client_cert_invalid',
    'optional_no_ca, /staff/ (optional): a presented certificate that failed '
    . 'is refused');

$r = creq(8444, 'wrong_ca', '/open/x');
is(status_reason($r), '200', 'optional_no_ca, /open/ (off): 200');

$r = creq(8444, 'alice', '/admin/x');
is(status_reason($r), '200', 'optional_no_ca, alice, /admin/: 200');

$r = creq(8444, 'none', '/staff/x');
is(status_reason($r), '200', 'optional_no_ca, no certificate, /staff/: 200');

###############################################################################
# ssl_verify_client on: no certificate is nginx's 496

$r = creq(8445, 'none', '/open/x');
is(status_reason($r), '403 client_cert_required',
    'verify on, no certificate: 403 client_cert_required (496 routed)');
$a = audit($r);
is(join(' ', map { $_ // '-' } $a->{reason}, $a->{outcome}, $a->{http}{status},
        $a->{tls}{client_cert}),
    'client_cert_required deny 403 none',
    'verify on, no certificate: audit reason, deny, 403, client_cert none');

$r = creq(8445, 'alice', '/open/x');
is(status_reason($r), '200', 'verify on, alice: 200');

$r = creq(8445, 'expired', '/open/x');
is(status_reason($r), '403 client_cert_invalid',
    'verify on, expired: 403 client_cert_invalid (495 routed)');
