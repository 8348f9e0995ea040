#!/usr/bin/perl

# The PHR policy as a specification: for each (token, request) the status
# and reason the gateway answers, and the one audit record it writes.
#
# Tokens are real ES256 tokens of a test issuer; the backend is a second
# nginx server with static FHIR JSON for reads and an echo for writes.
# Each case is one line of @CASES:
#
#   [token, method, uri, body, expectation]
#
# expectation is "<status> <reason|-> <interaction|?>": the response's
# status and the reason in its OperationOutcome ("-" for none), and the
# audit record's fhir.interaction ("?" when the request was refused before
# it was classified).  Every case also checks that its audit record
# exists once and carries the same reason and outcome.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $ISS = 'https://issuer.test';
my $AUD = 'https://fhir.test';

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

###############################################################################
# the backend's data: who owns what

my $J = JSON::XS->new->canonical;

sub res {
    my ($path, $r) = @_;
    $t->write_file("data/fhir/$path.json", $J->encode($r));
}

sub ref_to { return { reference => $_[0] } }

res("Patient/$_", { resourceType => 'Patient', id => $_,
    name => [{ family => "Family-$_" }] }) for qw(p1 p2 p3);
res('Observation/o1', { resourceType => 'Observation', id => 'o1',
    status => 'final', code => { text => 'weight' },
    subject => ref_to('Patient/p1') });
res('Observation/o1/_history/1', { resourceType => 'Observation',
    id => 'o1', meta => { versionId => '1' }, status => 'final',
    code => { text => 'weight' }, subject => ref_to('Patient/p1') });
res('Observation/o3', { resourceType => 'Observation', id => 'o3',
    status => 'final', code => { text => 'weight' },
    subject => ref_to('Patient/p2') });
res('Condition/c1', { resourceType => 'Condition', id => 'c1',
    subject => ref_to('Patient/p1') });
res('Medication/m1', { resourceType => 'Medication', id => 'm1',
    code => { text => 'aspirin' } });
res('Practitioner/dr1', { resourceType => 'Practitioner', id => 'dr1' });
# Groups name all their members: a search bound to one answers with all
res('Group', { resourceType => 'Bundle', type => 'searchset', total => 1,
    entry => [{ resource => { resourceType => 'Group', id => 'g12',
        type => 'person', actual => JSON::XS::true,
        member => [{ entity => ref_to('Patient/p1') },
                   { entity => ref_to('Patient/p2') }] } }] });
res('Patient/p1/Group', { resourceType => 'Bundle', type => 'searchset',
    total => 1, entry => [{ resource => { resourceType => 'Group',
        id => 'g1', type => 'person', actual => JSON::XS::true,
        member => [{ entity => ref_to('Patient/p1') }] } }] });
res('Patient', { resourceType => 'Bundle', type => 'searchset', total => 1,
    entry => [
        { resource => { resourceType => 'Patient', id => 'p1' },
          search => { mode => 'match' } },
        { resource => { resourceType => 'Group', id => 'g12',
            type => 'person', actual => JSON::XS::true,
            member => [{ entity => ref_to('Patient/p1') },
                       { entity => ref_to('Patient/p2') }] },
          search => { mode => 'include' } }] });
res('_empty', { resourceType => 'Bundle', type => 'searchset',
    total => 0 });

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_token_cache zone=tokens:1m;
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;

        location /fhir/ {
            welby on;
            welby_fhir_base /fhir;
            welby_fhir_system_clients bulk-client;
            welby_fhir_operations custom-op;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location = /fhir {
            welby on;
            welby_fhir_base /fhir;
            welby_fhir_system_clients bulk-client;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /fhir/metadata {
            welby on;
            welby_token off;
            welby_fhir_base /fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /detect/fhir/ {
            welby on;
            welby_mode detect;
            welby_fhir_base /detect/fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%/fhir/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location /fhir/ {
            root %%TESTDIR%%/data;
            default_type application/fhir+json;
            if ($request_method !~ ^(GET|HEAD)$) {
                return 418;
            }
            error_page 418 = @echo;
            try_files $uri.json /fhir/_empty.json =404;
        }

        location = /fhir { js_content echo.echo; }

        location @echo { js_content echo.echo; }
    }
}
EOF

$t->write_file('data/fhir/metadata.json', $J->encode({
    resourceType => 'CapabilityStatement', status => 'active' }));

$t->run();

###############################################################################
# tokens

my %TOK = (
    p1_all     => { scope => 'patient/*.cruds', patient => 'p1' },
    p1_rs      => { scope => 'patient/*.rs', patient => 'p1' },
    p1_v1read  => { scope => 'patient/*.read', patient => 'p1' },
    p1_v1write => { scope => 'patient/*.write', patient => 'p1' },
    p1_v1all   => { scope => 'patient/*.*', patient => 'p1' },
    p1_obs_r   => { scope => 'patient/Observation.r', patient => 'p1' },
    p1_obs_s   => { scope => 'patient/Observation.s', patient => 'p1' },
    p1_obs_rs  => { scope => 'patient/Observation.rs', patient => 'p1' },
    p1_obs_c   => { scope => 'patient/Observation.c', patient => 'p1' },
    p1_obs_cu  => { scope => 'patient/Observation.cu', patient => 'p1' },
    p1_pat_r   => { scope => 'patient/Patient.r', patient => 'p1' },
    p1_pat_rs  => { scope => 'patient/Patient.rs', patient => 'p1' },
    p1_pat_u   => { scope => 'patient/Patient.u', patient => 'p1' },
    p1_pat_d   => { scope => 'patient/Patient.d', patient => 'p1' },
    p1_lab     => { scope => 'patient/Observation.rs?category=laboratory',
                    patient => 'p1' },
    p1_noclaim => { scope => 'patient/*.rs' },
    p1_bad     => { scope => 'patient/*.sr patient/*.rx patient/Foo.r '
                    . 'patient/*.readwrite patient/*.cruds? patient/*.',
                    patient => 'p1' },
    p1_scp     => { scp => ['patient/*.rs'], patient => 'p1' },
    user_12    => { scope => 'user/*.cruds', patients => ['p1', 'p2'] },
    user_12rs  => { scope => 'user/*.rs', patients => ['p1', 'p2'] },
    user_none  => { scope => 'user/*.rs' },
    user_med   => { scope => 'user/Medication.rs user/Practitioner.r' },
    sys        => { scope => 'system/*.rs', client_id => 'bulk-client' },
    sys_other  => { scope => 'system/*.rs', client_id => 'app-1' },
    openid     => { scope => 'openid fhirUser launch/patient',
                    patient => 'p1' },
    none       => undef,
);

my %JWT;
for my $name (keys %TOK) {
    next unless $TOK{$name};
    # what a token does not name it does not have (claims() has defaults)
    $JWT{$name} = jwt(key => $key, set => {
        iss => $ISS, aud => $AUD, sub => "user-$name",
        client_id => 'app-1', scope => undef, patient => undef,
        %{ $TOK{$name} } });
}

###############################################################################
# bodies

sub obs {
    my ($subject, %more) = @_;
    return $J->encode({ resourceType => 'Observation', status => 'final',
        code => { text => 'weight' },
        (defined $subject ? (subject => ref_to($subject)) : ()), %more });
}

sub patient { $J->encode({ resourceType => 'Patient', @_ }) }

sub bundle {
    my ($type, @entries) = @_;
    return $J->encode({ resourceType => 'Bundle', type => $type,
        entry => [@entries] });
}

sub entry {
    my ($method, $url, $resource, $full) = @_;
    return { (defined $full ? (fullUrl => $full) : ()),
        ($resource ? (resource => JSON::XS->new->decode($resource)) : ()),
        request => { method => $method, url => $url } };
}

my $ABS = 'http://localhost/fhir';    # the Host the requests send

###############################################################################
# the cases

my @CASES = (
    # reads of the token's own patient, and another's
    [p1_rs => GET => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_rs => GET => '/fhir/Patient/p2', undef, '403 patient_mismatch read'],
    [p1_rs => GET => '/fhir/Patient/p3', undef, '403 patient_mismatch read'],
    [p1_rs => HEAD => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_rs => HEAD => '/fhir/Patient/p2', undef, '403 patient_mismatch read'],
    [p1_v1read => GET => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_v1read => GET => '/fhir/Patient/p2', undef,
        '403 patient_mismatch read'],
    [p1_v1all => GET => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_all => GET => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_scp => GET => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_scp => GET => '/fhir/Patient/p2', undef,
        '403 patient_mismatch read'],
    [p1_pat_r => GET => '/fhir/Patient/p1', undef, '200 - read'],
    [p1_pat_r => GET => '/fhir/Observation/o1', undef,
        '403 scope_insufficient read'],
    [p1_obs_r => GET => '/fhir/Patient/p1', undef,
        '403 scope_insufficient read'],
    [p1_v1write => GET => '/fhir/Patient/p1', undef,
        '403 scope_insufficient read'],
    [p1_noclaim => GET => '/fhir/Patient/p1', undef,
        '403 scope_insufficient read'],
    [p1_bad => GET => '/fhir/Patient/p1', undef,
        '403 scope_insufficient read'],
    [openid => GET => '/fhir/Patient/p1', undef,
        '403 scope_insufficient read'],
    [p1_lab => GET => '/fhir/Observation/o1', undef,
        '403 scope_insufficient read'],

    # vread and history
    [p1_rs => GET => '/fhir/Patient/p1/_history/1', undef, '200 - vread'],
    [p1_rs => GET => '/fhir/Patient/p2/_history/1', undef,
        '403 patient_mismatch vread'],
    [p1_rs => GET => '/fhir/Patient/p1/_history', undef,
        '200 - history-instance'],
    [p1_rs => GET => '/fhir/Patient/p2/_history', undef,
        '403 patient_mismatch history-instance'],
    [p1_pat_r => GET => '/fhir/Patient/p1/_history', undef,
        '200 - history-instance'],
    [p1_obs_rs => GET => '/fhir/Observation/_history', undef,
        '403 patient_unbound history-type'],
    [p1_rs => GET => '/fhir/_history', undef,
        '403 patient_unbound history-system'],
    [sys => GET => '/fhir/_history', undef, '200 - history-system'],

    # instance reads of other compartment types: the answer decides
    [p1_rs => GET => '/fhir/Observation/o1', undef, '200 - read'],
    [p1_rs => GET => '/fhir/Observation/o3', undef,
        '403 response_patient_mismatch read'],
    [p1_rs => GET => '/fhir/Condition/c1', undef, '200 - read'],
    [p1_rs => GET => '/fhir/Observation/o1/_history/1', undef,
        '200 - vread'],
    [p1_rs => HEAD => '/fhir/Observation/o1', undef,
        '403 patient_unverifiable read'],
    [user_12rs => GET => '/fhir/Observation/o3', undef, '200 - read'],
    [user_none => GET => '/fhir/Observation/o1', undef,
        '403 response_patient_mismatch read'],
    [sys => GET => '/fhir/Observation/o3', undef, '200 - read'],

    # resources outside the compartment
    [p1_rs => GET => '/fhir/Medication/m1', undef, '200 - read'],
    [p1_rs => GET => '/fhir/Practitioner/dr1', undef, '200 - read'],
    [user_med => GET => '/fhir/Medication/m1', undef, '200 - read'],
    [user_med => GET => '/fhir/Practitioner/dr1', undef, '200 - read'],
    [user_med => GET => '/fhir/Medication?code=aspirin', undef,
        '200 - search-type'],
    [user_med => GET => '/fhir/Practitioner?name=x', undef,
        '403 scope_insufficient search-type'],
    [p1_obs_rs => GET => '/fhir/Medication/m1', undef,
        '403 scope_insufficient read'],
    [p1_rs => GET => '/fhir/Medication?code=aspirin', undef,
        '200 - search-type'],

    # capabilities: public, and under a token
    [none => GET => '/fhir/metadata', undef, '200 - capabilities'],
    [p1_rs => GET => '/fhir/metadata', undef, '200 - capabilities'],

    # resource types
    [p1_rs => GET => '/fhir/Foo/1', undef, '404 fhir_type_unknown ?'],
    [p1_rs => GET => '/fhir/patient/p1', undef, '404 fhir_type_unknown ?'],
    [p1_rs => GET => '/fhir/PATIENT/p1', undef, '404 fhir_type_unknown ?'],
    [p1_rs => GET => '/fhir/Patient/p_1', undef, '400 request_malformed ?'],
    [p1_rs => GET => '/fhir/Patient/' . ('a' x 65), undef,
        '400 request_malformed ?'],
);

# searches: every spelling of the patient, on types with their own
# compartment parameters
my @SPELL = (
    ['%s', 'a bare id'],
    ['Patient/%s', 'a relative reference'],
    ['Patient%%2F%s', 'a relative reference, "/" encoded'],
    ["$ABS/Patient/%s", 'an absolute reference to this base'],
);

for my $s (@SPELL) {
    my ($fmt) = @$s;
    for my $p (['p1', '200 -'], ['p2', '403 patient_mismatch']) {
        my $enc = sprintf($fmt, $p->[0]);
        $enc =~ s/([:\/])/sprintf('%%%02X', ord $1)/ge if $enc =~ /^http/;
        for my $q ("Observation?patient=$enc", "Observation?subject=$enc",
            "Condition?patient=$enc", "MedicationRequest?patient=$enc",
            "Encounter?patient=$enc", "AllergyIntolerance?patient=$enc",
            "Immunization?patient=$enc", "DiagnosticReport?subject=$enc",
            "Procedure?patient=$enc", "CarePlan?patient=$enc")
        {
            push @CASES, [p1_rs => GET => "/fhir/$q", undef,
                "$p->[1] search-type"];
        }

        # Condition's and Procedure's "subject" is no compartment
        # parameter (R4 names "patient" there): it filters, binds nothing
        for my $q ("Condition?subject=$enc", "Procedure?subject=$enc") {
            push @CASES, [p1_rs => GET => "/fhir/$q", undef,
                '403 patient_unbound search-type'];
        }
    }
}

push @CASES, (
    # the ":Patient" type modifier binds; others are refused
    [p1_rs => GET => '/fhir/Observation?subject:Patient=p1', undef,
        '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?subject:Patient=p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient:missing=true', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient:not=p2', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient:identifier=x|1', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?subject=Group/g1', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?subject=https://evil.test/fhir/Patient/p1',
        undef, '403 fhir_unclassifiable ?'],

    # searches that name no patient
    [p1_rs => GET => '/fhir/Observation', undef,
        '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?code=1234-5', undef,
        '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Observation?patinet=p1', undef,
        '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Patient?name=Family-p2', undef,
        '403 patient_unbound search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1,p2', undef,
        '403 patient_mismatch search-type'],
    [user_12rs => GET => '/fhir/Patient?_id=p1,p2', undef,
        '200 - search-type'],
    [user_12rs => GET => '/fhir/Patient?_id=p1,p3', undef,
        '403 patient_mismatch search-type'],
    [user_12rs => GET => '/fhir/Observation?patient=p2', undef,
        '200 - search-type'],
    [user_none => GET => '/fhir/Observation?patient=p1', undef,
        '403 patient_mismatch search-type'],
    [sys => GET => '/fhir/Observation', undef, '200 - search-type'],
    [sys => GET => '/fhir/Observation?patient=p3', undef,
        '200 - search-type'],
    [sys_other => GET => '/fhir/Observation?patient=p1', undef,
        '403 system_scope_refused search-type'],

    # lists and repeats: every value is a target
    [p1_rs => GET => '/fhir/Observation?patient=p1,p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&patient=p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&subject=p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&performer=Patient/p2',
        undef, '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&patient=p1', undef,
        '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1%2Cp2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?pati%65nt=p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=%70%32', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&code=1234-5&_count=10',
        undef, '200 - search-type'],

    # chains, reverse chains, includes
    [p1_rs => GET => '/fhir/Observation?subject.name=Family-p2', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient.name=x&patient=p1', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?subject:Patient.name=x', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient?_has:Observation:patient:code=1234',
        undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=*', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:patient',
        undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include:iterate=Observation:patient',
        undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:performer',
        undef, '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:performer:Practitioner',
        undef, '200 - search-type'],
    [p1_obs_rs => GET => '/fhir/Observation?patient=p1&_include=Observation:performer:Practitioner',
        undef, '403 scope_insufficient search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Observation:subject',
        undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=*', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_revinclude=Provenance:target',
        undef, '403 fhir_unclassifiable ?'],
    [p1_obs_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Observation:subject',
        undef, '403 scope_insufficient search-type'],

    # result parameters
    [p1_rs => GET => '/fhir/Observation?patient=p1&_format=json', undef,
        '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_format=application/fhir%2Bjson',
        undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_format=xml', undef,
        '415 fhir_format_unsupported ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_sort=-date&_summary=true',
        undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_elements=code', undef,
        '200 - search-type'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_contained=true', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_filter=x', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Observation?patient=p1&_method=DELETE', undef,
        '403 fhir_unclassifiable ?'],

    # scope letters on searches
    [p1_obs_r => GET => '/fhir/Observation?patient=p1', undef,
        '403 scope_insufficient search-type'],
    [p1_obs_s => GET => '/fhir/Observation?patient=p1', undef,
        '200 - search-type'],
    [p1_obs_s => GET => '/fhir/Observation/o1', undef,
        '403 scope_insufficient read'],
    [p1_obs_s => GET => '/fhir/Condition?patient=p1', undef,
        '403 scope_insufficient search-type'],
    [p1_v1read => GET => '/fhir/Observation?patient=p1', undef,
        '200 - search-type'],
    [p1_v1write => GET => '/fhir/Observation?patient=p1', undef,
        '403 scope_insufficient search-type'],

    # granular scopes: exactly the parameter value
    [p1_lab => GET => '/fhir/Observation?patient=p1&category=laboratory',
        undef, '200 - search-type'],
    [p1_lab => GET => '/fhir/Observation?category=laboratory&patient=p1',
        undef, '200 - search-type'],
    [p1_lab => GET => '/fhir/Observation?patient=p1&category=vital-signs',
        undef, '403 scope_insufficient search-type'],
    [p1_lab => GET => '/fhir/Observation?patient=p1', undef,
        '403 scope_insufficient search-type'],
    [p1_lab => GET => '/fhir/Observation?patient=p1&category=laboratory,vital-signs',
        undef, '403 scope_insufficient search-type'],
    [p1_lab => GET => '/fhir/Observation?patient=p2&category=laboratory',
        undef, '403 patient_mismatch search-type'],

    # a Group's answer is checked even without welby_fhir_search_check
    [p1_rs => GET => '/fhir/Group?member=p1', undef,
        '403 response_patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Patient/p1/Group', undef, '200 - search-type'],
    [user_12rs => GET => '/fhir/Group?member=p1', undef, '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient?_id=p1&_revinclude=Group:member', undef,
        '403 response_patient_mismatch search-type'],

    # compartment searches
    [p1_rs => GET => '/fhir/Patient/p1/Observation', undef,
        '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient/p2/Observation', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Patient/p1/Observation?code=1234', undef,
        '200 - search-type'],
    [p1_rs => GET => '/fhir/Patient/p1/Observation?patient=p2', undef,
        '403 patient_mismatch search-type'],
    [p1_rs => GET => '/fhir/Patient/p1/Medication', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/p1/*', undef,
        '403 fhir_unclassifiable ?'],
    [p1_obs_r => GET => '/fhir/Patient/p1/Observation', undef,
        '403 scope_insufficient search-type'],

    # system search
    [p1_rs => GET => '/fhir?_type=Observation&patient=p1', undef,
        '200 - search-system'],
    [p1_rs => GET => '/fhir?_type=Observation,Condition&patient=p1', undef,
        '200 - search-system'],
    [p1_rs => GET => '/fhir?_type=Observation,Condition&patient=p2', undef,
        '403 patient_mismatch search-system'],
    [p1_obs_rs => GET => '/fhir?_type=Observation,Condition&patient=p1',
        undef, '403 scope_insufficient search-system'],
    [p1_rs => GET => '/fhir?patient=p1', undef,
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir?_type=Foo&patient=p1', undef,
        '404 fhir_type_unknown ?'],

    # POST _search with a form body
    [p1_rs => POST => '/fhir/Observation/_search',
        ['application/x-www-form-urlencoded', 'patient=p1&code=1234'],
        '200 - search-type'],
    [p1_rs => POST => '/fhir/Observation/_search',
        ['application/x-www-form-urlencoded', 'patient=p2'],
        '403 patient_mismatch search-type'],
    [p1_rs => POST => '/fhir/Observation/_search?patient=p1',
        ['application/x-www-form-urlencoded', 'patient=p2'],
        '403 patient_mismatch search-type'],
    [p1_rs => POST => '/fhir/Observation/_search',
        ['application/x-www-form-urlencoded', 'code=1234'],
        '403 patient_unbound search-type'],
    [p1_rs => POST => '/fhir/Observation/_search',
        ['application/x-www-form-urlencoded', 'patient=Patient%2Fp2'],
        '403 patient_mismatch search-type'],
    [p1_rs => POST => '/fhir/Observation/_search',
        ['application/x-www-form-urlencoded', 'subject.name=x'],
        '403 fhir_unclassifiable ?'],

    # operations
    [p1_rs => GET => '/fhir/Patient/p1/$everything', undef,
        '200 - operation'],
    [p1_rs => GET => '/fhir/Patient/p2/$everything', undef,
        '403 patient_mismatch operation'],
    [p1_obs_rs => GET => '/fhir/Patient/p1/$everything', undef,
        '403 scope_insufficient operation'],
    [p1_rs => GET => '/fhir/Patient/$everything', undef,
        '403 patient_unbound operation'],
    [p1_rs => GET => '/fhir/$export', undef,
        '403 scope_insufficient operation'],
    [sys => GET => '/fhir/$export', undef, '200 - operation'],
    [sys_other => GET => '/fhir/$export', undef,
        '403 system_scope_refused operation'],
    [p1_rs => GET => '/fhir/Patient/p1/$unknown-op', undef,
        '403 operation_unknown operation'],
    [p1_all => GET => '/fhir/Patient/p1/$custom-op', undef,
        '200 - operation'],
    [p1_rs => GET => '/fhir/Patient/p1/$custom-op', undef,
        '403 scope_insufficient operation'],
    [p1_rs => GET => '/fhir/Patient/p1/$meta', undef, '200 - operation'],
    [p1_rs => GET => '/fhir/Patient/p2/$meta', undef,
        '403 patient_mismatch operation'],
    [p1_rs => GET => '/fhir/Observation/$lastn?patient=p1', undef,
        '200 - operation'],
    [p1_rs => GET => '/fhir/Observation/$lastn?patient=p2', undef,
        '403 patient_mismatch operation'],
    [p1_rs => GET => '/fhir/Observation/$lastn', undef,
        '403 patient_unbound operation'],

    # writes: create
    [p1_all => POST => '/fhir/Observation', obs('Patient/p1'),
        '200 - create'],
    [p1_obs_c => POST => '/fhir/Observation', obs('Patient/p1'),
        '200 - create'],
    [p1_v1write => POST => '/fhir/Observation', obs('Patient/p1'),
        '200 - create'],
    [p1_rs => POST => '/fhir/Observation', obs('Patient/p1'),
        '403 scope_insufficient create'],
    [p1_v1read => POST => '/fhir/Observation', obs('Patient/p1'),
        '403 scope_insufficient create'],
    [p1_all => POST => '/fhir/Observation', obs('Patient/p2'),
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', obs("$ABS/Patient/p2"),
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation', obs("$ABS/Patient/p1"),
        '200 - create'],
    [p1_all => POST => '/fhir/Observation',
        '{"resourceType":"Observation","status":"final","code":{},'
        . '"subject":{"reference":"Patient\/p2"}}',
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation',
        '{"resourceType":"Observation","status":"final","code":{},'
        . '"subject":{"reference":"\u0050atient/p2"}}',
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation',
        '{"resourceType":"Observation","status":"final","code":{},'
        . '"subject":{"reference":"Patient/p\u0032"}}',
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation',
        obs('Patient/p1', performer => [ref_to('Patient/p2')]),
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation',
        obs('Patient/p1', performer => [ref_to('Practitioner/dr1')]),
        '200 - create'],
    [p1_all => POST => '/fhir/Observation', obs(undef),
        '403 patient_mismatch create'],
    [p1_all => POST => '/fhir/Observation',
        $J->encode({ resourceType => 'Observation', status => 'final',
            code => {}, subject => { identifier =>
                { system => 'urn:mrn', value => '2' } } }),
        '403 patient_unverifiable create'],
    [p1_all => POST => '/fhir/Observation',
        $J->encode({ resourceType => 'Observation', status => 'final',
            code => {}, subject => ref_to('https://evil.test/fhir/Patient/p1') }),
        '403 patient_unverifiable create'],
    [p1_all => POST => '/fhir/Observation',
        '{"resourceType":"Observation","subject":{"reference":"Patient/p1"},'
        . '"subject":{"reference":"Patient/p2"}}',
        '400 fhir_body_invalid create'],
    [p1_all => POST => '/fhir/Observation', '{"resourceType":',
        '400 fhir_body_invalid create'],
    [p1_all => POST => '/fhir/Observation', patient(id => 'p1'),
        '400 fhir_body_invalid create'],
    [p1_all => POST => '/fhir/Observation',
        ['application/fhir+xml', '<Observation/>'],
        '415 fhir_format_unsupported create'],
    [p1_all => POST => '/fhir/Patient', patient(),
        '403 patient_mismatch create'],
    [user_12 => POST => '/fhir/Observation', obs('Patient/p2'),
        '200 - create'],
    [user_12 => POST => '/fhir/Observation', obs('Patient/p3'),
        '403 patient_mismatch create'],

    # writes: update, patch, delete
    [p1_pat_u => PUT => '/fhir/Patient/p1', patient(id => 'p1'),
        '200 - update'],
    [p1_pat_u => PUT => '/fhir/Patient/p1', patient(id => 'p2'),
        '400 fhir_id_mismatch update'],
    [p1_pat_u => PUT => '/fhir/Patient/p2', patient(id => 'p2'),
        '403 patient_mismatch update'],
    [p1_pat_u => PUT => '/fhir/Patient/p1', patient(),
        '400 fhir_id_mismatch update'],
    [p1_pat_u => PUT => '/fhir/Patient/p1',
        patient(id => 'p1', link => [{ type => 'seealso',
            other => ref_to('Patient/p2') }]),
        '403 patient_mismatch update'],
    [p1_rs => PUT => '/fhir/Patient/p1', patient(id => 'p1'),
        '403 scope_insufficient update'],
    [p1_all => PUT => '/fhir/Observation/o1', obs('Patient/p1', id => 'o1'),
        '403 patient_unverifiable update'],
    [sys => PUT => '/fhir/Observation/o1', obs('Patient/p1', id => 'o1'),
        '403 scope_insufficient update'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1',
        ['application/json-patch+json',
         '[{"op":"replace","path":"/active","value":true}]'],
        '200 - patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p2',
        ['application/json-patch+json',
         '[{"op":"replace","path":"/active","value":true}]'],
        '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1',
        ['application/json-patch+json',
         '[{"op":"add","path":"/link/-","value":{"other":'
         . '{"reference":"Patient/p2"},"type":"seealso"}}]'],
        '403 patient_mismatch patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1',
        ['application/json-patch+json', '{"op":"replace"}'],
        '400 fhir_body_invalid patch'],
    [p1_pat_u => PATCH => '/fhir/Patient/p1',
        ['application/fhir+json',
         $J->encode({ resourceType => 'Parameters' })],
        '415 fhir_format_unsupported patch'],
    [p1_pat_d => DELETE => '/fhir/Patient/p1', undef, '200 - delete'],
    [p1_pat_d => DELETE => '/fhir/Patient/p2', undef,
        '403 patient_mismatch delete'],
    [p1_rs => DELETE => '/fhir/Patient/p1', undef,
        '403 scope_insufficient delete'],
    [p1_all => DELETE => '/fhir/Observation/o1', undef,
        '403 patient_unverifiable delete'],
    [p1_all => DELETE => '/fhir/Observation?patient=p1', undef,
        '403 fhir_unclassifiable ?'],

    # method overrides and other methods
    [p1_rs => GET => '/fhir/Patient/p1',
        { 'X-HTTP-Method-Override' => 'DELETE' },
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/p1', { 'X-Method-Override' => 'PUT' },
        '403 fhir_unclassifiable ?'],
    [p1_rs => GET => '/fhir/Patient/p1', { 'X-HTTP-Method' => 'PUT' },
        '403 fhir_unclassifiable ?'],
    [p1_rs => POST => '/fhir/Patient/p1', patient(id => 'p1'),
        '403 fhir_unclassifiable ?'],

    # batch and transaction Bundles, entry by entry
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(POST => 'Observation', obs('Patient/p1'))),
        '200 - transaction'],
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(POST => 'Observation', obs('Patient/p1')),
        entry(POST => 'Observation', obs('Patient/p2'))),
        '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('batch',
        entry(GET => 'Patient/p1')), '200 - batch'],
    [p1_all => POST => '/fhir', bundle('batch',
        entry(GET => 'Patient/p1'), entry(GET => 'Patient/p2')),
        '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('batch',
        entry(GET => 'Observation?patient=p2')),
        '403 patient_mismatch batch'],
    [p1_all => POST => '/fhir', bundle('batch',
        entry(GET => 'Observation?subject.name=x')),
        '403 fhir_unclassifiable batch'],
    [p1_all => POST => '/fhir', bundle('batch',
        entry(GET => 'Observation/o1')),
        '403 patient_unverifiable batch'],
    [p1_rs => POST => '/fhir', bundle('transaction',
        entry(POST => 'Observation', obs('Patient/p1'))),
        '403 scope_insufficient transaction'],
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(POST => 'Patient', patient(), 'urn:uuid:9f1c'),
        entry(POST => 'Observation', obs('urn:uuid:9f1c'))),
        '403 patient_mismatch transaction'],
    [user_12 => POST => '/fhir', bundle('transaction',
        entry(POST => 'Observation', obs('Patient/p1')),
        entry(POST => 'Observation', obs('Patient/p2'))),
        '200 - transaction'],
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(PUT => 'Patient/p2', patient(id => 'p2'))),
        '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(DELETE => 'Patient/p2')),
        '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(POST => 'Observation', obs("$ABS/Patient/p2"))),
        '403 patient_mismatch transaction'],
    [p1_all => POST => '/fhir', bundle('transaction',
        entry(PUT => "$ABS/Patient/p1", patient(id => 'p1'))),
        '200 - transaction'],
    [p1_all => POST => '/fhir', bundle('collection',
        entry(POST => 'Observation', obs('Patient/p1'))),
        '400 fhir_body_invalid ?'],
    [p1_all => POST => '/fhir', bundle('transaction',
        { request => { method => 'POST', url => 'Bundle' },
          resource => { resourceType => 'Bundle', type => 'transaction' } }),
        '403 fhir_unclassifiable transaction'],
    [p1_all => POST => '/fhir', obs('Patient/p1'),
        '400 fhir_body_invalid ?'],

    # detect mode: everything passes, the record says why not
    [p1_rs => GET => '/detect/fhir/Patient/p2', undef,
        '200 patient_mismatch read'],
    [p1_rs => GET => '/detect/fhir/Observation', undef,
        '200 patient_unbound search-type'],
    [p1_rs => GET => '/detect/fhir/Patient/p1', undef, '200 - read'],
);

###############################################################################

my $n = 0;

sub outcome_reason {
    my ($r) = @_;
    my $j = eval { JSON::XS->new->decode($r->body) };
    return ($j && ref $j eq 'HASH' && ($j->{resourceType} // '') eq
        'OperationOutcome')
        ? (eval { $j->{issue}[0]{details}{coding}[0]{code} } // '-') : '-';
}

sub audit_of {
    my ($id) = @_;
    return undef unless defined $id;
    my @lines;
    $t->wait_for(sub {
        @lines = grep { index($_, "\"id\":\"$id\"") >= 0 }
            split /\n/, $t->read_file('audit.log');
        return scalar @lines;
    });
    my @a = grep { ($_->{id} // '') eq $id }
        map { eval { JSON::XS->new->decode($_) } // {} } @lines;
    return @a == 1 ? $a[0] : { count => scalar @a };
}

# the refusals that say the token does not reach what was asked for
# carry an RFC 6750 challenge with error="insufficient_scope"; others none
my %INSUFFICIENT = map { $_ => 1 } qw(scope_insufficient system_scope_refused
    patient_mismatch patient_unbound patient_unverifiable);

plan(tests => 3 * @CASES + 2);

cmp_ok(scalar @CASES, '>=', 250, 'the matrix has at least 250 cases');

for my $c (@CASES) {
    my ($tok, $method, $uri, $body, $expect) = @$c;
    my ($status, $reason, $interaction) = split / /, $expect;

    my @h;
    push @h, "Authorization: Bearer $JWT{$tok}" if $JWT{$tok};
    my ($ct, $content);
    if (ref $body eq 'ARRAY') {
        ($ct, $content) = @$body;
    } elsif (ref $body eq 'HASH') {
        push @h, map { "$_: $body->{$_}" } sort keys %$body;
    } elsif (defined $body) {
        ($ct, $content) = ('application/fhir+json', $body);
    }
    push @h, "Content-Type: $ct" if defined $ct;

    my $r = parse_response(http_req(method => $method, uri => $uri,
        headers => \@h, (defined $content ? (body => $content) : ())));

    my $name = "$tok $method $uri"
        . (defined $content ? ' ' . substr($content, 0, 60) : '');

    my $got = $r ? $r->status . ' '
        . ($method eq 'HEAD' || $r->status < 400 ? '-' : outcome_reason($r))
        : 'no response';
    my $want = $status . ' '
        . ($status < 400 || $method eq 'HEAD' ? '-' : $reason);
    is($got, $want, "$name: $want");

    my $challenge = $r && $r->header('WWW-Authenticate') // '';
    my $want_challenge = $status == 403 && $INSUFFICIENT{$reason}
        ? 'insufficient_scope' : 'none';
    is($challenge =~ /^Bearer realm="welby", error="insufficient_scope"/
        ? 'insufficient_scope' : ($challenge eq '' ? 'none' : $challenge),
        $want_challenge, "$name: WWW-Authenticate: $want_challenge");

    my $a = audit_of($r && $r->header('X-Request-Id')) // {};
    my $rec = join ' ', ($a->{reason} // '-'),
        ($interaction eq '?' ? '?' : ($a->{fhir}{interaction} // '-'));
    is($rec, "$reason $interaction",
        "$name: the audit record says $reason $interaction");
}

# detect mode logs what it would have refused, by request id and code
my $dr = parse_response(http_req(uri => '/detect/fhir/Patient/p2',
    headers => ["Authorization: Bearer $JWT{p1_rs}"]));
my $did = $dr && $dr->header('X-Request-Id') // 'none';
ok(scalar $t->wait_for_log(qr/\[warn\].*\Q welby: detect id:$did\E
    \Q step:policy reason:patient_mismatch\E/x),
    'detect: the [warn] line names the step and the reason');
