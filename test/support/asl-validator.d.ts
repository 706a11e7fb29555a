// asl-validator 4 ships no type declarations; this is the part of its API the tests use.
declare module "asl-validator" {
  interface AslValidationError {
    "Error code": string;
    Message: string;
  }
  function aslValidator(definition: unknown): {
    isValid: boolean;
    errors: AslValidationError[];
    errorsText(separator?: string): string;
  };
  export default aslValidator;
}
