#!/usr/bin/perl

# `make run`'s demo, started by its own script on free ports: it serves the
# demo FHIR data over TLS and HTTP/2 through the module, with the shipped
# TLS profile (conf/welby-tls.conf) and HSTS, refuses what the module
# refuses, redirects plain HTTP with 308, and stops cleanly on Ctrl-C.
# Its /fhir/ resources need an access token of the demo issuer, whose keys
# conf/demo/run makes and conf/demo/mint-token signs with; its /admin/
# needs the client certificate of alice, from the demo staff CA.  Its
# backend, conf/demo/fhir-server, is an in-memory FHIR R4 server: first
# tested alone, each interaction, then behind the gateway through the
# commands the demo prints.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use HTTP::Tiny;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Welby::Nginx;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = Welby::Nginx->new();

# ---------------------------------------------------------------------------
# The demo FHIR backend alone (conf/demo/fhir-server), on a port of its
# own: every interaction it offers, against it directly.
# ---------------------------------------------------------------------------

my $fport = $t->port(8091);
my $flog = $t->testdir() . '/fhir-server.log';
my $fpid = fork() // die "fork: $!";
if ($fpid == 0) {
    exec("$FindBin::Bin/../conf/demo/fhir-server", '--port', $fport,
        '--log', $flog, '--exit-with-parent') or die "exec: $!";
}
my $flistens;
for (1 .. 100) {
    last if waitpid($fpid, WNOHANG) != 0;
    $flistens = IO::Socket::IP->new(PeerAddr => "127.0.0.1:$fport")
        and last;
    sleep 0.1;
}
ok($flistens, 'conf/demo/fhir-server listens on its loopback port');

my $ua = HTTP::Tiny->new(timeout => 10);
my $fbase = "http://127.0.0.1:$fport/fhir";
my $js = JSON::PP->new->utf8->canonical;

# (status, decoded JSON or undef, headers) of one request to the backend
sub fx {
    my ($method, $path, $body, $ctype, %h) = @_;
    my %opt = (headers => {%h});
    if (defined $body) {
        $opt{content} = ref $body ? $js->encode($body) : $body;
        $opt{headers}{'Content-Type'} = $ctype // 'application/fhir+json';
    }
    my $r = $ua->request($method, "$fbase$path", \%opt);
    my $j = eval { $js->decode($r->{content}) };
    return ($r->{status}, $j, $r->{headers});
}

# "status total ids" of a search
sub found {
    my ($st, $b) = fx(@_);
    return "$st" unless $b && ($b->{resourceType} // '') eq 'Bundle';
    return join ' ', $st, $b->{total} // '-',
        map { $_->{resource}{id} // '?' } @{ $b->{entry} || [] };
}

# "status code" of an OperationOutcome answer
sub oo {
    my ($st, $b, $h) = fx(@_);
    return join ' ', $st,
        ($b && ($b->{resourceType} // '') eq 'OperationOutcome'
            && ($h->{'content-type'} // '') =~ m{^application/fhir\+json})
        ? $b->{issue}[0]{code} : 'no-OperationOutcome';
}

my ($st, $cs, $hd) = fx('GET', '/metadata');
ok($st == 200 && $cs && $cs->{resourceType} eq 'CapabilityStatement'
        && $cs->{fhirVersion} eq '4.0.1'
        && ($hd->{'content-type'} // '') eq
            'application/fhir+json; charset=utf-8',
    'metadata: a CapabilityStatement (FHIR 4.0.1) as application/fhir+json');

my @ops = map { $_->{name} } map { @{ $_->{operation} || [] } }
    @{ $cs && $cs->{rest}[0]{resource} || [] };
my @sys = map { $_->{code} } @{ $cs && $cs->{rest}[0]{interaction} || [] };
is("@ops @sys", 'everything batch transaction',
    'metadata names $everything, batch and transaction');

my ($pst, $p1, $ph) = fx('GET', '/Patient/p1');
is_deeply([$pst, map({ $_->{text} } @{ $p1 && $p1->{name} || [] }),
        $ph->{etag}],
    [200, '山田 花子', 'ヤマダ ハナコ', 'Hanako Yamada', 'W/"1"'],
    'read: Patient p1 with its kanji, kana and romaji names, ETag W/"1"');

my @names = map {
    my (undef, $p) = fx('GET', "/Patient/$_");
    $p ? $p->{name}[2]{text} : '-';
} qw(p2 p3);
is("@names", 'Taro Sato Ichiro Suzuki', 'read: Patients p2 and p3');

is(oo('GET', '/Patient/nobody'), '404 not-found',
    'read of an unknown id: 404 OperationOutcome');
is(oo('GET', '/Patient/a_b'), '400 invalid',
    'read of an id FHIR does not allow: 400 OperationOutcome');
is(oo('GET', '/Practitioner/x1'), '404 not-supported',
    'a resource type the backend does not serve: 404 OperationOutcome');
is(oo('GET', '/patient/p1'), '400 invalid',
    'a path that is no resource type: 400 OperationOutcome');

is(found('GET', '/Patient?_id=p3,p1'), '200 2 p1 p3',
    'search _id with a comma list: a searchset Bundle with total');
is(found('GET', '/Observation?patient=p1'), '200 2 o1 o2',
    'search patient=p1');
is(found('GET', '/Observation?patient=Patient/p2'), '200 3 o3 o4 o5',
    'search patient=Patient/p2');
is(found('GET', "/Condition?subject=$fbase/Patient/p3"), '200 1 c3',
    'search subject with an absolute reference');
is(found('GET', '/Observation?subject=Patient/p3'), '200 2 o6 o7',
    'search subject=Patient/p3');
is(found('GET', '/Observation?subject=p1&subject=Patient/p1'), '200 2 o1 o2',
    'search subject repeated (AND) and as a bare id');
is(found('GET', '/Observation?code=http://loinc.org%7C29463-7'),
    '200 3 o2 o4 o6', 'search code with system|code');
is(found('GET', '/Observation?code=4548-4&patient=p3'), '200 1 o7',
    'search code and patient together');
is(found('GET', '/Condition?code=http://hl7.org/fhir/sid/icd-10%7CI10,'
        . 'http://hl7.org/fhir/sid/icd-10%7CJ45.9'), '200 2 c1 c3',
    'search code with a comma list of tokens');
is(found('GET', '/Observation?patient=p2&_count=1'), '200 3 o3',
    'search _count: one entry, total of all matches');
is(found('GET', '/Observation?patient=p2&_count=0'), '200 3',
    'search _count=0: the total only');
is(oo('GET', '/Observation?_count=many'), '400 invalid',
    'search with a bad _count: 400 OperationOutcome');
is(found('GET', '/Observation?foo=bar&subject:Patient=p1'),
    '200 7 o1 o2 o3 o4 o5 o6 o7',
    'unknown search parameters (and modifiers) are ignored: everybody\'s');
is(found('GET', '/Patient?patient=p1'), '200 3 p1 p2 p3',
    'patient is no search parameter of Patient: ignored too');

my (undef, $sb) = fx('GET', '/Condition?patient=p2');
is(join(' ', map { $_->{fullUrl} } @{ $sb && $sb->{entry} || [] }),
    "$fbase/Condition/c2", 'search entries have a fullUrl under the base');
(undef, $sb) = fx('GET', '/Condition?patient=p2', undef, undef,
    'X-Forwarded-Proto' => 'https',
    'X-Forwarded-Host' => 'localhost:8443');
is($sb && $sb->{entry}[0]{fullUrl},
    'https://localhost:8443/fhir/Condition/c2',
    'behind the gateway, fullUrl is of the gateway\'s base');

is(found('GET', '/Patient/p1/Observation'), '200 2 o1 o2',
    'compartment search Patient/p1/Observation');
is(found('GET', '/Patient/p3/Condition?code=J45.9'), '200 1 c3',
    'compartment search with a parameter');
is(oo('GET', '/Patient/nobody/Observation'), '404 not-found',
    'compartment search of an unknown patient: 404');
is(found('POST', '/Observation/_search', 'patient=p3&_count=5',
        'application/x-www-form-urlencoded'), '200 2 o6 o7',
    'search with POST _search and a form body');

my ($est, $ev) = fx('GET', '/Patient/p1/$everything');
is(join(' ', $est, map { "$_->{resource}{resourceType}/$_->{resource}{id}" }
        @{ $ev && $ev->{entry} || [] }),
    '200 Patient/p1 Observation/o1 Observation/o2 Condition/c1',
    'Patient/p1/$everything: the patient and its compartment');

my $obs = {
    resourceType => 'Observation', status => 'final',
    code => { coding => [{ system => 'http://loinc.org',
                           code => '29463-7' }] },
    subject => { reference => 'Patient/p3' },
    valueQuantity => { value => 70.5, unit => 'kg' },
};
my ($cst, $cr, $ch) = fx('POST', '/Observation', { %$obs, id => 'mine' });
my ($new) = ($ch->{location} // '')
    =~ m{^\Q$fbase\E/Observation/([A-Za-z0-9.-]+)/_history/1$};
ok($cst == 201 && $new && $new ne 'mine' && $cr && $cr->{id} eq $new,
    'create: 201, a new id (not the client\'s), Location of version 1')
    or diag(explain [$cst, $ch]);
$new //= 'none';
my (undef, $back) = fx('GET', "/Observation/$new");
is($back && $back->{valueQuantity}{value}, 70.5,
    'create: the new resource reads back');
is(found('GET', '/Observation?patient=p3'), "200 3 o6 o7 $new",
    'create: the new resource is found by search');

is(oo('POST', '/Observation', { %$obs, resourceType => 'Condition' }),
    '400 invalid', 'create with another resourceType: 400');
is(oo('POST', '/Observation', '{"resourceType":', undef), '400 invalid',
    'create with a body that is not JSON: 400');
is(oo('POST', '/Observation', '<Observation/>', 'application/fhir+xml'),
    '415 not-supported', 'create with XML: 415');

my ($ust, $upd) = fx('PUT', '/Observation/o6',
    { %$obs, id => 'o6', status => 'amended' });
is(join(' ', $ust, $upd && $upd->{meta}{versionId}, $upd && $upd->{status}),
    '200 2 amended', 'update: 200, version 2');
is(oo('PUT', '/Observation/o6', { %$obs, id => 'o7' }), '400 invalid',
    'update whose body id is not the path id: 400');
my ($u2) = fx('PUT', '/Observation/byclient', { %$obs, id => 'byclient' });
is($u2, 201, 'update of a new id creates it: 201');

my @v = map {
    my ($s, $b) = fx('GET', "/Observation/o6/_history/$_");
    $s . ($b && $b->{resourceType} eq 'Observation' ? ":$b->{status}" : '');
} 1 .. 3;
is("@v", '200:final 200:amended 404', 'vread: versions 1 and 2, no 3');

my ($pa, $pr) = fx('PATCH', '/Observation/o6', [
    { op => 'replace', path => '/status', value => 'corrected' },
    { op => 'add', path => '/note', value => [{ text => 'rechecked' }] },
    { op => 'add', path => '/note/-', value => { text => 'twice' } },
    { op => 'remove', path => '/valueQuantity/unit' },
], 'application/json-patch+json');
is_deeply([$pa, $pr && $pr->{meta}{versionId}, $pr && $pr->{status},
        $pr && [map { $_->{text} } @{ $pr->{note} }],
        $pr && exists $pr->{valueQuantity}{unit} ? 1 : 0],
    [200, 3, 'corrected', ['rechecked', 'twice'], 0],
    'JSON Patch: add, replace, remove; version 3');
is(oo('PATCH', '/Observation/o6',
        [{ op => 'move', from => '/status', path => '/x' }],
        'application/json-patch+json'), '400 not-supported',
    'JSON Patch with an operation other than add/replace/remove: 400');
is(oo('PATCH', '/Observation/o6',
        [{ op => 'replace', path => '/id', value => 'o1' }],
        'application/json-patch+json'), '400 invalid',
    'JSON Patch that changes the id: 400');
is(oo('PATCH', '/Observation/o6',
        [{ op => 'remove', path => '/nothing' }],
        'application/json-patch+json'), '400 invalid',
    'JSON Patch removing what is not there: 400');
is(oo('PATCH', '/Observation/o6', [], 'application/json'),
    '415 not-supported', 'PATCH that is not application/json-patch+json: 415');
is(oo('PATCH', '/Observation/nobody', [], 'application/json-patch+json'),
    '404 not-found', 'PATCH of an unknown id: 404');

my ($hst, $hb) = fx('GET', '/Observation/o6/_history');
is(join(' ', $hst, $hb && $hb->{type},
        map { $_->{resource}{meta}{versionId} } @{ $hb && $hb->{entry} || [] }),
    '200 history 3 2 1', 'history of an instance: every version');

my ($dst) = fx('DELETE', "/Observation/$new");
is(join(' ', $dst, oo('GET', "/Observation/$new")), '204 410 deleted',
    'delete: 204, then read answers 410');
is(found('GET', "/Observation?_id=$new"), '200 0',
    'a deleted resource is no longer found');
is(oo('DELETE', '/Observation/nobody'), '404 not-found',
    'delete of an unknown id: 404');
is(oo('PROPFIND', '/Patient/p1'), '405 not-supported',
    'a method the backend does not know: 405 OperationOutcome');

my ($bst, $bb) = fx('POST', '', {
    resourceType => 'Bundle', type => 'batch', entry => [
        { request => { method => 'GET', url => 'Patient/p2' } },
        { request => { method => 'GET', url => 'Patient/nobody' } },
        { request => { method => 'GET', url => 'Observation?patient=p1' } },
        { request => { method => 'POST', url => 'Condition' },
          resource => { resourceType => 'Condition',
                        subject => { reference => 'Patient/p2' } } },
    ] });
is(join(' ', $bst, $bb && $bb->{type},
        map { $_->{response}{status} } @{ $bb && $bb->{entry} || [] }),
    '200 batch-response 200 OK 404 Not Found 200 OK 201 Created',
    'batch: each entry on its own, failures included');
is($bb && $bb->{entry}[2]{resource}{total}, 2,
    'batch: a search entry answers with its Bundle');

my $urn = 'urn:uuid:9a7b3c1e-2f4d-4e6a-8b1c-0d2e3f4a5b6c';
my ($tst, $tb) = fx('POST', '/', {
    resourceType => 'Bundle', type => 'transaction', entry => [
        { request => { method => 'POST', url => 'Observation' },
          resource => { %$obs, subject => { reference => $urn } } },
        { fullUrl => $urn, request => { method => 'POST', url => 'Patient' },
          resource => { resourceType => 'Patient',
                        name => [{ text => '高橋 美咲' }] } },
        { request => { method => 'DELETE', url => 'Condition/c2' } },
    ] });
my @loc = map { ($_->{response}{location} // '') =~ m{/fhir/(\w+/[\w.-]+)/_history/}
    ? $1 : '-' } @{ $tb && $tb->{entry} || [] };
my (undef, $to) = fx('GET', "/$loc[0]");
ok($tst == 200 && $tb->{type} eq 'transaction-response'
        && $loc[1] =~ m{^Patient/} && $to
        && $to->{subject}{reference} eq $loc[1],
    'transaction: the urn:uuid reference becomes the new Patient\'s id')
    or diag(explain [$tst, $tb, $to]);
is(oo('GET', '/Condition/c2'), '410 deleted',
    'transaction: its delete happened');

my $before = found('GET', '/Patient');
is(oo('POST', '', {
    resourceType => 'Bundle', type => 'transaction', entry => [
        { request => { method => 'POST', url => 'Patient' },
          resource => { resourceType => 'Patient' } },
        { request => { method => 'PUT', url => 'Patient/p1' },
          resource => { resourceType => 'Patient', id => 'p2' } },
    ] }), '400 invalid', 'transaction with a failing entry: 400');
is(found('GET', '/Patient'), $before,
    'a failed transaction changes nothing (all or nothing)');
is(oo('POST', '', { resourceType => 'Bundle', type => 'collection' }),
    '400 invalid', 'POST to the base of a Bundle that is no batch: 400');

my (undef, undef, $rh) = fx('GET', '/Patient/p1', undef, undef,
    'X-Request-Id' => 'abc-123');
is($rh->{'x-demo-backend-request-id'}, 'abc-123',
    'the backend echoes X-Request-Id as X-Demo-Backend-Request-Id');
my $flogtext = $t->read_file($flog);
ok($flogtext =~ m{"GET /fhir/Patient/p1" 200 \d+ x_request_id="abc-123"}
        && $flogtext !~ /\?|p1,|code=|_count/,
    'the backend logs method, path, status and request id, no query');

kill 'TERM', $fpid;
my $fstatus;
for (1 .. 100) {
    if (waitpid($fpid, WNOHANG) == $fpid) { $fstatus = $?; last }
    sleep 0.1;
}
is($fstatus, 0, 'SIGTERM stops the backend, exit status 0');

# ---------------------------------------------------------------------------
# The demo: conf/demo/run, as `make run` starts it
# ---------------------------------------------------------------------------

my %demo = $t->demo_start();
my ($dir, $https, $http, $backend, $up) =
    @demo{qw(dir https http backend up)};

ok($up, 'the demo listens on its HTTPS port')
    or diag($t->read_file('demo.out'));

my $ca = "$dir/ca.crt";
my $base = "https://localhost:$https";

sub curl {
    my ($args) = @_;
    return scalar `curl -s --max-time 10 --cacert $ca $args 2>&1`;
}

# the banner may come a moment after the port is open (slower under ASan)
my $out = '';
for (1 .. 100) {
    $out = $t->read_file('demo.out');
    last if $out =~ /Press Ctrl-C to stop\./;
    sleep 0.1;
}

like($out, qr{curl --cacert \S+ \Q$base\E/fhir/Patient/p1},
    'the demo prints ready-to-paste curl commands');
like($out, qr{Authorization: Bearer .*mint-token},
    'the printed commands mint their tokens with conf/demo/mint-token');
my $alice = "--cert $dir/staff/alice.crt --key $dir/staff/alice.key";
my $admin_with = qr{curl --cacert \S+ \Q$alice $base\E/admin/ };
my $admin_without =
    qr{curl --cacert \S+ -i \Q$base\E/admin/ .*client_cert_required};
like($out, qr{$admin_with.*\n.*$admin_without},
    'the printed commands call /admin/ with and without alice\'s certificate');

# the staff PKI: a CA with a CRL, alice's certificate (key 0600) from it
my $verify_cmd = "openssl verify -CAfile $dir/staff-ca.crt -crl_check "
    . "-CRLfile $dir/staff-ca.crl -purpose sslclient $dir/staff/alice.crt";
my $verify_alice = `$verify_cmd 2>&1`;
my $staff_ca = `openssl x509 -in $dir/staff-ca.crt -noout -subject`;
my $alice_mode = (stat "$dir/staff/alice.key")[2] // 0;
ok($verify_alice =~ /: OK$/m && ($alice_mode & 0777) == 0600
        && $staff_ca =~ /Welby Demo Staff CA/,
    'the demo made a staff CA with a CRL and alice\'s client certificate '
    . '(key 0600)') or diag($verify_alice, sprintf('%o', $alice_mode));

# the issuer keys: private halves 0600, the JWKS public only
my @mode = map { (stat "$dir/keys/$_.key")[2] } qw(rs256 es256 eddsa);
my $jwks = eval { decode_json($t->read_file('demo/keys/jwks.json')) };
my @algs = sort map { $_->{alg} } @{ $jwks && $jwks->{keys} || [] };
ok(@mode == 3 && !grep({ !defined || ($_ & 0777) != 0600 } @mode)
    && "@algs" eq 'ES256 EdDSA RS256'
    && !grep({ exists $_->{d} } @{ $jwks->{keys} }),
    'the demo made RS256, ES256 and EdDSA issuer keys: private PEMs 0600, '
    . 'jwks.json with public keys only') or diag(explain [\@mode, $jwks]);

# WELBY_DEMO_DIR (set above) tells mint-token where the keys are
my $mint = "$FindBin::Bin/../conf/demo/mint-token";
sub mint { my $tk = `$mint @_`; chomp $tk; return $tk }
my $tok = mint("--sub p1 --patient p1 --scope 'patient/*.read' "
    . "--amr pwd,otp --ttl 300 --alg ES256");
like($tok, qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'mint-token prints a JWS token');
my $auth = "-H 'Authorization: Bearer $tok'";

my $r = curl("-i $base/fhir/Patient/p1");
my ($body) = $r =~ /\r\n\r\n(.*)\z/s;
my $oo = eval { decode_json($body // '') };
ok($r =~ m{^HTTP/\S+ 401 }
    && $r =~ m{^www-authenticate: Bearer realm="welby"\r?$}mi
    && $oo && $oo->{issue}[0]{details}{coding}[0]{code} eq 'token_missing',
    'no token: 401 token_missing with a Bearer challenge') or diag($r);

my @got = map {
    my $tk = mint("--alg $_ --sub p1 --patient p1 --scope 'patient/*.read' "
        . "--keys $dir/keys");
    curl("-o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $tk' "
        . "$base/fhir/Patient/p1");
} qw(RS256 ES256 EdDSA);
is("@got", '200 200 200',
    'tokens minted with the RS256, ES256 and EdDSA demo keys: 200');

$r = curl("-o /dev/null -w '%{http_code}' $base/fhir/metadata");
is($r, '200', '/fhir/metadata is public: 200 without a token');

my $p = eval { decode_json(curl("$auth $base/fhir/Patient/p1")) };
is($p && $p->{resourceType}, 'Patient',
    'a demo Patient is served over TLS, verified against the demo CA');

# HSTS: the module's default on every /fhir/ answer over HTTPS
my $HSTS = 'max-age=31536000; includeSubDomains';
my @hsts = map {
    my $r = curl("-i $_");
    my @h = $r =~ /^strict-transport-security: (.*?)\r?$/mgi;
    my ($st) = $r =~ m{^HTTP/\S+ (\d+)};
    ($st // '') . ' ' . join('|', @h);
} ("$auth $base/fhir/Patient/p1", "$base/fhir/Patient/p1",
   "$base/fhir/metadata");
is("@hsts", "200 $HSTS 401 $HSTS 200 $HSTS",
    'HSTS (one year, includeSubDomains) on /fhir/ answers, refusals too');

# /admin/: alice's client certificate, no token
$r = curl("-i $alice $base/admin/");
($body) = $r =~ /\r\n\r\n(.*)\z/s;
my $admin = eval { decode_json($body // '') };
ok($r =~ m{^HTTP/\S+ 200 } && $admin && $admin->{admin} eq 'ok',
    '/admin/ with alice\'s client certificate: 200 {"admin":"ok"}')
    or diag($r);

sub reason_of {
    my ($resp) = @_;
    my ($st) = $resp =~ m{^HTTP/\S+ (\d+)};
    my ($b) = $resp =~ /\r\n\r\n(.*)\z/s;
    my $j = eval { decode_json($b // '') };
    return ($st // '') . ' '
        . (($j && $j->{issue}[0]{details}{coding}[0]{code}) // '');
}

is(reason_of(curl("-i $base/admin/")), '403 client_cert_required',
    '/admin/ without a client certificate: 403 client_cert_required');

# the server's certificate is of the other demo CA: nginx's 495, answered
# by the module through conf/welby-tls.conf
is(reason_of(curl("-i --cert $dir/server.crt --key $dir/server.key "
        . "$base/admin/")), '403 client_cert_invalid',
    '/admin/ with a certificate of another CA: 403 client_cert_invalid');

my $h = curl("--http2 -sI $auth $base/fhir/Patient/p1");
like($h, qr{^HTTP/2 200}m, 'HTTP/2 is negotiated with ALPN');
like($h, qr{^x-request-id: [0-9a-f]{32}\r?$}mi,
    'the demo answers with a generated request id');

# a client's own id is not taken (no trusted proxy in the demo): the
# record keeps it apart, checked once the demo has stopped
$h = curl("-i $auth -H 'X-Request-Id: demo-1' $base/fhir/Condition/c1");
my ($demo_id) = $h =~ /^x-request-id: ([0-9a-f]{32})\r?$/mi;
$demo_id //= 'none';
isnt($demo_id, 'none', 'a client request id is replaced by the gateway\'s');

$r = curl("$auth -X PROPFIND $base/fhir/Patient/p1");
$oo = eval { decode_json($r) };
is($oo && $oo->{issue}[0]{details}{coding}[0]{code}, 'method_not_allowed',
    'the module refuses PROPFIND with an OperationOutcome');

is(reason_of(curl("-i $auth '$base/fhir/Patient%2Fp1'")),
    '400 request_malformed',
    'the module refuses an encoded slash: 400 request_malformed');

my $uri = '/fhir/Observation?patient=p1'
    . '&code=http%3A%2F%2Floinc.org%7C8867-4&_count=2';
$h = curl("-i 'http://localhost:$http$uri'");
like($h, qr{^HTTP/1.1 308 .*^Location: \Q$base$uri\E\r?$}ms,
    'plain HTTP answers 308 to the same path and query over HTTPS');
unlike($h, qr{^strict-transport-security:}mi,
    'no HSTS on the plain-HTTP redirect');

# ---------------------------------------------------------------------------
# The printed commands, run as printed (with their T, O, W and F lines) from
# the repository root: what each comment says is what each gets.
# ---------------------------------------------------------------------------

# [name, a pattern that finds the one printed line, "status[ reason]"]
my @allowed = (
    ['p1 reads her own Patient', qr{ \$T" \S+/fhir/Patient/p1   #},
     '200'],
    ['a search of p1\'s Observations', qr{/fhir/Observation\?patient=p1&},
     '200'],
    ['a compartment search of p1', qr{/fhir/Patient/p1/Condition },
     '200'],
    ['a write of p1\'s Observation with a write scope',
     qr{ \$W" .* -d "\$O" \S+/fhir/Observation }, '201'],
    ['p2\'s own token reads Patient/p2',
     qr{--sub p2 --patient p2 .*/fhir/Patient/p2 }, '200'],
    ['a read with a client request id', qr{X-Request-Id: demo-1}, '200'],
    ['a family token reads p3\'s Observations',
     qr{ \$F" \S+/fhir/Patient/p3/Observation }, '200'],
);

# The policy's refusals, each as printed
my @refused = (
    ['p1\'s token reads Patient/p2', qr{ \$T" \S+/fhir/Patient/p2 },
     '403 patient_mismatch'],
    ['a write with a read-only scope',
     qr{ \$T" .* -d "\$O" \S+/fhir/Observation }, '403 scope_insufficient'],
    ['p1\'s token reads p2\'s Observation o3 (the answer is checked)',
     qr{/fhir/Observation/o3 }, '403 response_patient_mismatch'],
    ['a search the backend does not understand (the answer is checked)',
     qr{/fhir/Observation\?subject:Patient=p1'}, '403 response_patient_mismatch'],
    ['a family token reads Patient/p2, outside the family',
     qr{ \$F" \S+/fhir/Patient/p2 }, '403 patient_mismatch'],
    ['an SQL injection in a search the policy allows',
     qr{code=1%27%20OR}, '403 waf_block'],
    ['a log4j lookup in a write the policy allows',
     qr{ -d "\$J" }, '403 waf_block'],
);

my @printed = grep { /^  curl / } split /\n/, $out;
my $setup = join "\n", grep { /^  [TWOFJB]=/ } split /\n/, $out;
my $repo = "$FindBin::Bin/..";

for my $case (@allowed, @refused) {
    my ($name, $re, $want) = @$case;
    my @lines = grep { /$re/ } @printed;
    my ($said) = @lines == 1
        ? $lines[0] =~ /#\s+(?:allowed|refused): (\d{3}(?: [a-z_]+)?)/ : ();
    is($said // "@lines", $want, "printed: $name, its comment says $want");
}

for my $case (@allowed, @refused) {
    my ($name, $re, $want) = @$case;
    my ($line) = grep { /$re/ } @printed;
    $line //= 'false';
    $line =~ s/\s+#.*\z//;
    $line =~ s/^\s*curl /curl -s -i --max-time 10 /;
    open my $sh, '-|', 'bash', '-c', "cd '$repo' && $setup\n$line"
        or die "bash: $!";
    my $resp = do { local $/; <$sh> };
    close $sh;
    my $got = reason_of($resp);
    $got =~ s/ \z//;
    is($got, $want, "through the gateway: $name: $want") or diag($resp);
}

# the per-subject limit: the printed burst of 300, then the request after
# it, as printed (whether that one finds a request freed depends on the
# moment: what it must carry either way is checked)

my ($loop) = grep { /^  for i in / } split /\n/, $out;
my ($after) = grep { / \$B" \S+\/fhir\/Patient\/p1   #/ } @printed;
ok(defined $loop && defined $after,
    'the demo prints the burst and the request after it');

my $burst_start = time();
my $counts = `cd '$repo' && $setup\n$loop`;
my $burst_s = time() - $burst_start;
my ($pass) = $counts =~ /^\s*(\d+) 200 $/m;
my @refused_ra = $counts =~ /^\s*(\d+) 429 (\d+)$/mg;
my ($refused, %ra) = (0);
while (my ($n, $s) = splice(@refused_ra, 0, 2)) { $refused += $n; $ra{$s} = 1 }
$pass //= 0;
my $most = 51 + int(2 * $burst_s) + 1;
ok($pass >= 51 && $pass <= $most && $refused == 300 - $pass,
    sprintf('the printed burst of 300 in %.1f s: %d pass (51 at once, then '
        . '2 a second: at most %d), the rest 429', $burst_s, $pass, $most))
    or diag($counts);
is(join(' ', sort keys %ra), $refused ? '1' : '',
    "each of the $refused 429s says Retry-After: 1 (0.5 s rounded up)");

$after =~ s/\s+#.*\z//;
$after =~ s/^\s*curl /curl -s -i --max-time 10 /;
my $resp = `cd '$repo' && $setup\n$after`;
(my $st = reason_of($resp)) =~ s/ \z//;
like($resp, qr/^RateLimit: "per-subject";r=\d+;t=1\r?$/mi,
    "the request after the burst ($st): RateLimit \"per-subject\";r=..;t=1");
like($resp, qr/^RateLimit-Policy: "per-subject";q=52;w=26\r?$/mi,
    'and RateLimit-Policy "per-subject";q=52;w=26 (2 a second, 51 at once)');
is(($resp =~ /^Retry-After: 1\r?$/mi) ? 1 : 0,
    $st eq '429 rate_limited' ? 1 : 0,
    'and a Retry-After exactly when it is refused');

# a transaction at the base itself (/fhir, no slash), with a token that
# may write p1's Observations: both entries p1's
my $wtok = mint("--sub p1 --patient p1 --scope "
    . "'patient/Patient.rs patient/Observation.cruds' --alg ES256");
my $tx = encode_json({ resourceType => 'Bundle', type => 'transaction',
    entry => [
        { request => { method => 'GET', url => 'Patient/p1' } },
        { request => { method => 'POST', url => 'Observation' },
          resource => { resourceType => 'Observation', status => 'final',
                        code => { text => 'steps' },
                        subject => { reference => 'Patient/p1' } } },
    ] });
open my $txf, '>', "$dir/tx.json" or die "$dir/tx.json: $!";
print $txf $tx;
close $txf;
my $txr = eval { decode_json(curl("-H 'Authorization: Bearer $wtok' "
    . "-H 'Content-Type: application/fhir+json' --data-binary \@$dir/tx.json "
    . "$base/fhir")) };
is(join(' ', $txr ? $txr->{type} : 'none',
        map { $_->{response}{status} } @{ $txr && $txr->{entry} || [] }),
    'transaction-response 200 OK 201 Created',
    'a transaction Bundle POSTed to the base /fhir through the gateway');

# the backend builds fullUrl from the gateway's scheme and Host
my $sr = eval { decode_json(curl("$auth '$base/fhir/Condition?patient=p1'")) };
is(join(' ', map { $_->{fullUrl} } @{ $sr && $sr->{entry} || [] }),
    "$base/fhir/Condition/c1",
    'through the gateway, search entries\' fullUrl is of the gateway\'s base');

my $status = $t->demo_stop(%demo);
is($status, 0, 'Ctrl-C (SIGINT) stops the demo, exit status 0');

# the backend is nginx's child once the script has become nginx: it goes
# when its parent does
my $left;
for (1 .. 50) {
    $left = IO::Socket::IP->new(PeerAddr => "127.0.0.1:$backend") or last;
    sleep 0.1;
}
ok(!$left, 'no demo backend is left: its port is closed after Ctrl-C');

# (read_file gives '' for a missing file: the first check is what says
# this is the demo's log at all)
my $log = $t->read_file('demo/error.log');
like($log, qr/: start worker process \d+\n.*: signal 2 \(SIGINT\) received/ms,
    'the demo\'s error.log shows a worker started and the master stopped '
    . 'by SIGINT');
unlike($log, qr/\[(alert|crit|emerg)\]/,
    'the demo logged no alert, crit or emerg');

# stopped, the demo has written its whole audit trail
my @audit = -f "$dir/audit.log"
    ? grep { /^\{"schema":1,/ } split /\n/, $t->read_file('demo/audit.log')
    : ();
my $verify = @audit ? `$FindBin::Bin/../conf/audit-verify $dir/audit.log 2>&1`
    : '';
ok(@audit >= 10 && $? == 0, 'the demo wrote an audit trail whose chains '
    . 'verify') or diag($verify);
is(scalar(grep { /"id":"\Q$demo_id\E","client_request_id":"demo-1",/ }
        @audit), 1,
    'its record has the gateway\'s id and the client\'s apart');

my @reports = grep { -s } glob($t->testdir() . '/sanitizer/*');
is_deeply(\@reports, [], 'no sanitizer report from the demo');

done_testing();

